// The `trainer` executable: one binary, subcommands like git (DESIGN section 6).
// Exit codes: 0 success, 2 bad input (one line on stderr), 3 the run failed (diverged),
// 1 internal fault.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>

#include "data/prepare_images.h"
#include "data/prepare_synthetic.h"
#include "data/prepare_translation.h"
#include "layers/error.h"
#include "parallel/runtime.h"
#include "trainer/commands.h"
#include "trainer/config.h"
#include "trainer/inspect.h"
#include "trainer/plot.h"
#include "trainer/smoke.h"
#include "trainer/system_info.h"
#include "trainer/training.h"

namespace {

int run(int argc, char** argv, tr::ParallelRuntime& runtime) {
  CLI::App app{"Distributed transformer trainer (encoder-decoder translation, ViT)"};
  app.require_subcommand(1);

  tr::TrainArgs train;
  bool help_config = false;
  CLI::App* train_cmd = app.add_subcommand("train", "train a model from a YAML config");
  train_cmd->add_option("--config", train.config_path, "run configuration (YAML)");
  train_cmd->add_option("--set", train.overrides, "override a config key: key.path=value")
      ->take_all();
  train_cmd->add_option("--resume", train.resume,
                        "auto (continue RUN_DIR's newest checkpoint), never, or a checkpoint");
  train_cmd->add_flag("--overwrite", train.overwrite,
                      "with --resume never: replace the run (checkpoints, metrics) in run.dir");
  train_cmd->add_flag("--help-config", help_config, "list every config key with its default");

  tr::EvalArgs eval;
  CLI::App* eval_cmd = app.add_subcommand("eval", "evaluate a checkpoint or weights file (JSON)");
  eval_cmd->add_option("--config", eval.config_path, "run configuration (YAML)")->required();
  eval_cmd->add_option("--set", eval.overrides, "override a config key")->take_all();
  eval_cmd->add_option("--checkpoint", eval.checkpoint, "checkpoint or run directory");
  eval_cmd->add_option("--weights", eval.weights, "weights file");
  eval_cmd->add_option("--data", eval.data, "dataset to evaluate (default: data.valid)");
  eval_cmd->add_option("--beam", eval.beam, "beam size for BLEU (default: eval.beam)");

  tr::TranslateArgs translate;
  CLI::App* translate_cmd =
      app.add_subcommand("translate", "translate sentences from stdin to stdout");
  translate_cmd->add_option("--checkpoint", translate.checkpoint, "checkpoint or run directory")
      ->required();
  translate_cmd->add_option("--beam", translate.beam, "beam size (1 = greedy)")
      ->capture_default_str();
  translate_cmd->add_option("--batch", translate.batch, "sentences per batch")
      ->capture_default_str();
  translate_cmd
      ->add_option("--length-penalty", translate.length_penalty, "alpha of score / length^alpha")
      ->capture_default_str();
  translate_cmd->add_option("--device", translate.device, "cpu | cuda | auto (a usable GPU)")
      ->capture_default_str();
  translate_cmd->add_flag("--ids", translate.ids,
                          "lines are space-separated token ids, in and out (data without a "
                          "tokenizer, e.g. prepare synthetic)");

  tr::PredictArgs predict;
  CLI::App* predict_cmd = app.add_subcommand("predict", "print the predicted class per image");
  predict_cmd->add_option("--checkpoint", predict.checkpoint, "checkpoint or run directory")
      ->required();
  predict_cmd->add_option("--data", predict.data, "image dataset (HDF5)")->required();
  predict_cmd->add_option("--device", predict.device, "cpu | cuda | auto (a usable GPU)")
      ->capture_default_str();

  std::string export_checkpoint, export_out;
  CLI::App* export_cmd = app.add_subcommand("export", "write a checkpoint's weights file");
  export_cmd->add_option("--checkpoint", export_checkpoint, "checkpoint or run directory")
      ->required();
  export_cmd->add_option("--out", export_out, "weights file to write")->required();

  CLI::App* info_cmd =
      app.add_subcommand("info", "what this build supports and which GPUs it can train on here");

  std::string inspect_path;
  CLI::App* inspect_cmd =
      app.add_subcommand("inspect", "summarise a dataset, weights file or checkpoint");
  inspect_cmd->add_option("path", inspect_path, "file or directory")->required();

  std::string plot_dir, plot_out = "curves.png";
  CLI::App* plot_cmd = app.add_subcommand("plot", "plot a run's metrics to a PNG");
  plot_cmd->add_option("run_dir", plot_dir, "run directory")->required();
  plot_cmd->add_option("--out", plot_out, "PNG to write")->capture_default_str();

  CLI::App* prepare_cmd = app.add_subcommand("prepare", "convert raw data to HDF5 datasets");
  prepare_cmd->require_subcommand(1);
  tr::PrepareImagesOptions images;
  std::string class_names;
  CLI::App* images_cmd = prepare_cmd->add_subcommand("images", "IDX image + label files");
  images_cmd->add_option("--images", images.images, "X-images-idx3-ubyte[.gz]")->required();
  images_cmd->add_option("--labels", images.labels, "X-labels-idx1-ubyte[.gz]")->required();
  images_cmd->add_option("--out", images.out, "HDF5 file to write")->required();
  images_cmd->add_option("--stats-from", images.stats_from,
                         "reuse mean/std of this prepared file (test sets)");
  images_cmd->add_option("--num-classes", images.num_classes, "default: largest label + 1");
  images_cmd->add_option("--class-names", class_names, "fashion-mnist, or a comma list");
  tr::PrepareTranslationOptions text;
  CLI::App* text_cmd = prepare_cmd->add_subcommand("translation", "parallel text files");
  text_cmd->add_option("--src", text.src, "source sentences, one per line [.gz]")->required();
  text_cmd->add_option("--tgt", text.tgt, "target sentences, one per line [.gz]")->required();
  text_cmd->add_option("--out", text.out, "HDF5 file to write")->required();
  text_cmd->add_option("--vocab-size", text.vocab_size, "joint SentencePiece vocabulary size");
  text_cmd->add_option("--tokenizer", text.tokenizer,
                       "reuse this .model or prepared dataset's tokenizer");
  text_cmd->add_option("--max-len", text.max_len, "drop pairs longer than max_len - 1 tokens");
  text_cmd->add_option("--model-type", text.model_type, "unigram | bpe")->capture_default_str();
  tr::PrepareSyntheticOptions synthetic;
  CLI::App* synthetic_cmd = prepare_cmd->add_subcommand(
      "synthetic", "random token sequences for a copy or reverse task (no tokenizer)");
  synthetic_cmd->add_option("--task", synthetic.task, "copy | reverse")->capture_default_str();
  synthetic_cmd->add_option("--records", synthetic.records, "sequence pairs")
      ->capture_default_str();
  synthetic_cmd->add_option("--vocab", synthetic.vocab_size, "vocabulary size (ids 0-3 special)")
      ->capture_default_str();
  synthetic_cmd->add_option("--min-len", synthetic.min_len, "shortest sequence, in tokens")
      ->capture_default_str();
  synthetic_cmd->add_option("--max-len", synthetic.max_len, "longest sequence, in tokens")
      ->capture_default_str();
  synthetic_cmd->add_option("--seed", synthetic.seed, "generator seed")->capture_default_str();
  synthetic_cmd->add_option("--out", synthetic.out, "HDF5 file to write")->required();

  tr::SmokeOptions smoke;
  double min_accuracy = 0;
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
  smoke_cmd->add_option("--device", smoke.device, "cpu | cuda | auto (a usable GPU)")
      ->capture_default_str();
  smoke_cmd->add_option("--save", smoke.save, "write the trained weights to this file");
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

  if (*train_cmd) {
    if (help_config) {
      std::fputs(tr::config_help().c_str(), stdout);
      return 0;
    }
    if (train.config_path.empty()) throw tr::UserError("train: --config is required");
    return tr::run_training(train, runtime);
  }
  if (*info_cmd) {
    std::fputs(tr::system_info().c_str(), stdout);
    return 0;
  }
  if (*eval_cmd) {
    std::printf("%s\n", tr::run_eval_command(eval).c_str());
    return 0;
  }
  if (*translate_cmd) {
    std::ios::sync_with_stdio(false);
    tr::run_translate_command(translate, std::cin, std::cout);
    return 0;
  }
  if (*predict_cmd) {
    const double accuracy = tr::run_predict_command(predict, std::cout);
    std::cout.flush();  // every prediction line before the summary, also when both are piped
    std::fflush(stdout);
    std::fprintf(stderr, "accuracy against the file's labels: %.2f%%\n", 100 * accuracy);
    return 0;
  }
  if (*export_cmd) {
    tr::run_export_command(export_checkpoint, export_out);
    std::fprintf(stderr, "weights written to %s\n", export_out.c_str());
    return 0;
  }
  if (*inspect_cmd) {
    std::fputs(tr::inspect_path(inspect_path).c_str(), stdout);
    return 0;
  }
  if (*plot_cmd) {
    tr::plot_run(plot_dir, plot_out);
    std::fprintf(stderr, "plot written to %s\n", plot_out.c_str());
    return 0;
  }
  if (*images_cmd) {
    if (!class_names.empty()) images.class_names = tr::parse_class_names(class_names);
    const tr::PreparedImages r = tr::prepare_images(images);
    std::fprintf(stderr, "%s: %lld images %lldx%lldx%lld, %lld classes\n", images.out.c_str(),
                 static_cast<long long>(r.records), static_cast<long long>(r.height),
                 static_cast<long long>(r.width), static_cast<long long>(r.channels),
                 static_cast<long long>(r.num_classes));
    return 0;
  }
  if (*text_cmd) {
    text.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    const tr::PreparedTranslation r = tr::prepare_translation(text);
    std::fprintf(stderr, "%s: %lld pairs (%lld empty and %lld too long dropped), vocabulary %d\n",
                 text.out.c_str(), static_cast<long long>(r.records),
                 static_cast<long long>(r.dropped_empty), static_cast<long long>(r.dropped_long),
                 r.vocab_size);
    return 0;
  }
  if (*synthetic_cmd) {
    const tr::PreparedSynthetic r = tr::prepare_synthetic(synthetic);
    std::fprintf(stderr, "%s: %lld %s pairs, %lld tokens a side, vocabulary %d\n",
                 synthetic.out.c_str(), static_cast<long long>(r.records), synthetic.task.c_str(),
                 static_cast<long long>(r.tokens), synthetic.vocab_size);
    return 0;
  }
  if (*smoke_cmd) {
    const double accuracy = tr::run_smoke(smoke);
    return accuracy >= min_accuracy ? 0 : 1;
  }
  return 0;
}

// Reports a failure; in a job of several ranks, ends every rank (a peer waiting in a
// collective would otherwise wait for the watchdog).
int fail(tr::ParallelRuntime& runtime, int code, const std::string& message) {
  if (runtime.world_size() > 1)
    std::fprintf(stderr, "trainer: rank %d: %s\n", runtime.world_rank(), message.c_str());
  else
    std::fprintf(stderr, "trainer: %s\n", message.c_str());
  if (runtime.world_size() > 1) runtime.abort(code);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  // Idle OpenMP threads spin briefly, then sleep. Sleeping at once (OMP_WAIT_POLICY=PASSIVE)
  // pays a wake-up in every parallel region and every GEMM: the reference ViT step ran 13-16%
  // slower on an idle 2-core machine. Spinning without bound (libgomp's default when a team
  // is busy) starves anything sharing the cores (other ranks, a data thread, another job:
  // measured 6x slower on 2 cores). 10,000 spins keep a thread awake across the short gaps
  // between a step's regions and cost 11% against PASSIVE with a busy process on the second
  // core (docs/PERFORMANCE.md). libgomp reads its environment when it loads, before main, so
  // set it and start again; a user's OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept as given.
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT")) {
    setenv("GOMP_SPINCOUNT", "10000", 1);
    // The resolved path, not /proc/self/exe: the process keeps its name ("trainer") in ps.
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
      self[n] = '\0';
      execv(self, argv);  // returns only on failure: then run as we are
    }
  }
  tr::ParallelRuntime runtime(&argc, &argv);
  try {
    return run(argc, argv, runtime);
  } catch (const tr::UserError& e) {
    return fail(runtime, 2, e.what());
  } catch (const tr::RunFailure& e) {
    return fail(runtime, 3, e.what());
  } catch (const std::exception& e) {
    return fail(runtime, 1, std::string("internal error: ") + e.what());
  }
}
