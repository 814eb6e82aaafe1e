// Issue 5, acceptance "stop and resume": a run stopped at step k (train.steps=k) and resumed to
// N logs bit for bit the per-step losses of one uninterrupted N-step run: data order across
// shuffled epochs, dropout masks, gradient accumulation, AdamW state and the schedule all
// continue exactly. For the ViT and both encoder-decoders, with sentence and token batching,
// in fp32 and bf16.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "e2e/cli_runner.h"
#include "e2e/resume_helpers.h"

namespace tr {
namespace {

namespace fs = std::filesystem;
using namespace tr::testing;

struct Case {
  std::string name;
  RunSetup setup;
  std::int64_t stop_at;  // k
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class ResumeExact : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() { use_one_thread(); }
};

constexpr std::int64_t kSteps = 12;  // 1.5 epochs of 8 steps

TEST_P(ResumeExact, StoppedAndResumedRunIsBitwiseEqual) {
  const Case& c = GetParam();
  const fs::path dir = scratch_dir("resume_exact_" + c.name);
  const std::string every = "--set checkpoint.every_steps=4";
  const CliResult ref = run_trainer(c.setup.command(dir / "ref", kSteps, every));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  const CliResult first = run_trainer(c.setup.command(dir / "run", c.stop_at, every));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const CliResult second = run_trainer(c.setup.command(dir / "run", kSteps, every));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("(step " + std::to_string(c.stop_at) + ")"), std::string::npos)
      << "expected a resume from step " << c.stop_at << ":\n"
      << second.output;
  const auto reference = step_losses(dir / "ref");
  ASSERT_EQ(reference.size(), static_cast<std::size_t>(kSteps));
  const int compared = expect_bitwise_equal(reference, step_losses(dir / "run"));
  EXPECT_EQ(compared, kSteps);
  // Dropout and shuffling are on: the losses are not trivially repeated.
  EXPECT_NE(reference.at(1), reference.at(9));
  // A bf16 run is one: its losses are not fp32's, and follow them (0.75% at most measured).
  RunSetup fp32 = c.setup;
  std::erase(fp32.sets, "train.precision=bf16");
  if (fp32.sets.size() != c.setup.sets.size()) {
    const CliResult r = run_trainer(fp32.command(dir / "fp32", kSteps));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto wide = step_losses(dir / "fp32");
    ASSERT_EQ(wide.size(), reference.size());
    double worst = 0;
    for (const auto& [step, loss] : wide)
      worst = std::max(worst, std::abs(reference.at(step) - loss) / loss);
    EXPECT_GT(worst, 0.0) << "bf16 losses equal fp32's: bf16 did not take effect";
    EXPECT_LT(worst, 2e-2);
    std::printf("bf16 vs fp32: largest step-loss difference %.3g\n", worst);
  }
  if (!HasFailure()) fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Models, ResumeExact,
    ::testing::Values(
        // micro_batch 4 of global 8: two accumulated micro-batches per step
        Case{"vit_accumulation", {"vit", {}}, 5},
        Case{"vit_epoch_boundary", {"vit", {"train.micro_batch=0"}}, 8},
        Case{"encdec_pre_accumulation", {"encdec_pre", {}}, 5},
        Case{"encdec_post_tokens",
             {"encdec_post", {"data.batching=tokens", "data.max_tokens=48"}},
             3},
        Case{"encdec_pre_tokens_no_prefetch",
             {"encdec_pre", {"data.batching=tokens", "data.max_tokens=36", "data.prefetch=0"}},
             7},
        // bf16 activations and products on the CPU (layers/precision.h): the fp32 master
        // weights and optimizer state resume the same way.
        Case{"vit_bf16", {"vit", {"train.device=cpu", "train.precision=bf16"}}, 5},
        Case{"encdec_pre_bf16", {"encdec_pre", {"train.device=cpu", "train.precision=bf16"}}, 7}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tr
