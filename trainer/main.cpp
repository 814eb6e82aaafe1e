// The `trainer` executable: one binary, subcommands like git (DESIGN section 6).
// Exit codes: 0 success, 2 bad input (one line on stderr), 1 internal fault.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "layers/error.h"
#include "trainer/smoke.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"Distributed transformer trainer (encoder-decoder translation, ViT)"};
  app.require_subcommand(1);

  tr::SmokeOptions smoke;
  CLI::App* smoke_cmd =
      app.add_subcommand("smoke", "train a small model on a synthetic task and report accuracy");
  smoke_cmd->add_option("--model", smoke.model, "vit | encoder_decoder")->capture_default_str();
  smoke_cmd->add_option("--steps", smoke.steps, "optimizer steps")->capture_default_str();
  smoke_cmd->add_option("--batch", smoke.batch, "samples per step")->capture_default_str();
  smoke_cmd->add_option("--seed", smoke.seed, "run seed")->capture_default_str();
  smoke_cmd->add_option("--lr", smoke.lr, "peak learning rate")->capture_default_str();
  smoke_cmd->add_option("--log-every", smoke.log_every, "steps between log lines")
      ->capture_default_str();
  smoke_cmd->add_option("--init", smoke.init, "weights file to start from");
  smoke_cmd->add_option("--save", smoke.save, "write the trained weights to this file");
  double min_accuracy = 0;
  smoke_cmd->add_option("--min-accuracy", min_accuracy,
                        "exit 1 when the held-out accuracy ends below this fraction");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "trainer: %s\n", e.what());
    return 2;
  }

  if (*smoke_cmd) {
    const double accuracy = tr::run_smoke(smoke);
    return accuracy >= min_accuracy ? 0 : 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const tr::UserError& e) {
    std::fprintf(stderr, "trainer: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trainer: internal error: %s\n", e.what());
    return 1;
  }
}
