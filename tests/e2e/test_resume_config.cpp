// Issue 5, resuming: `--resume never` refuses a run directory that already holds a run unless
// --overwrite is given; on resume the config given now is used, where a model-shape change is
// an error naming the key (exit 2, nothing written) while train.steps, evaluation, logging and
// checkpoint settings may change without changing the training (bitwise equal losses).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "e2e/cli_runner.h"
#include "e2e/resume_helpers.h"
#include "trainer/checkpoint.h"

namespace tr {
namespace {

namespace fs = std::filesystem;
using namespace tr::testing;

class ResumeConfig : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    use_one_thread();
    dir_ = scratch_dir("resume_config");
    const CliResult r = run_trainer(setup_.command(dir_ / "ref", 10));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  // A run dir holding a 4-step run (checkpoint at step 4).
  fs::path started_run(const std::string& name) {
    const fs::path run = dir_ / name;
    const CliResult r = run_trainer(setup_.command(run, 4));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return run;
  }

  static inline fs::path dir_;
  static inline const RunSetup setup_{"encdec_pre", {"checkpoint.every_steps=4"}};
};

TEST_F(ResumeConfig, NeverRefusesAnExistingRunDirectory) {
  const fs::path run = started_run("never");
  const std::string metrics = read_text(run / "metrics.jsonl");
  const CliResult r = run_trainer(setup_.command(run, 10, "--resume never"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find(run.string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--overwrite"), std::string::npos) << r.output;
  EXPECT_EQ(read_text(run / "metrics.jsonl"), metrics) << "the old run was touched";
  EXPECT_EQ(read_checkpoint_meta(find_latest_checkpoint(run.string())).step, 4);
}

TEST_F(ResumeConfig, NeverWithOverwriteStartsAfresh) {
  const fs::path run = started_run("overwrite");
  const fs::path marker = run / "checkpoints" / "step_00000004" / "marker";
  { std::ofstream(marker) << "of the old run\n"; }
  const CliResult r = run_trainer(setup_.command(run, 10, "--resume never --overwrite"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("resuming"), std::string::npos) << r.output;
  // One fresh run of 10 steps: no rows of the old one, the same losses as the reference.
  EXPECT_EQ(count_lines(read_text(run / "metrics.jsonl")), 10);
  EXPECT_EQ(expect_bitwise_equal(step_losses(dir_ / "ref"), step_losses(run)), 10);
  EXPECT_FALSE(fs::exists(marker)) << "a checkpoint of the old run was kept";
}

TEST_F(ResumeConfig, OverwriteWithoutNeverIsRefused) {
  const fs::path run = started_run("overwrite_auto");
  const std::string metrics = read_text(run / "metrics.jsonl");
  const CliResult r = run_trainer(setup_.command(run, 10, "--overwrite"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--resume never"), std::string::npos) << r.output;
  EXPECT_EQ(read_text(run / "metrics.jsonl"), metrics);
}

TEST_F(ResumeConfig, ModelShapeChangeIsAnErrorNamingTheKey) {
  const fs::path run = started_run("shape");
  const std::string metrics = read_text(run / "metrics.jsonl");
  for (const std::string change :
       {"model.d_ff=48", "model.heads=2", "model.decoder_layers=1", "model.norm=post"}) {
    const std::string key = change.substr(0, change.find('='));
    const CliResult r = run_trainer(setup_.command(run, 10, "--set " + change));
    EXPECT_EQ(r.exit_code, 2) << change << ": " << r.output;
    EXPECT_EQ(count_lines(r.output), 1) << r.output;
    EXPECT_NE(r.output.find(key), std::string::npos) << change << ": " << r.output;
    EXPECT_NE(r.output.find("step_00000004"), std::string::npos) << r.output;
  }
  EXPECT_EQ(read_text(run / "metrics.jsonl"), metrics) << "a refused resume wrote metrics";
}

TEST_F(ResumeConfig, StepsEvalLogAndCheckpointSettingsMayChange) {
  const fs::path run = started_run("settings");
  const std::string golden = std::string(TR_GOLDEN_DIR) + "/train/encdec_pre_data.h5";
  const CliResult r = run_trainer(setup_.command(
      run, 10,
      "--set data.valid=" + golden +
          " --set eval.every_steps=3 --set eval.max_batches=1 --set checkpoint.every_steps=5 "
          "--set checkpoint.keep=1"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(step 4)"), std::string::npos) << r.output;
  EXPECT_EQ(expect_bitwise_equal(step_losses(dir_ / "ref"), step_losses(run)), 10);
  // keep 1 now: only the final checkpoint is left.
  int checkpoints = 0;
  for (const auto& entry : fs::directory_iterator(run / "checkpoints"))
    checkpoints += entry.is_directory();
  EXPECT_EQ(checkpoints, 1);
  EXPECT_EQ(read_checkpoint_meta(find_latest_checkpoint(run.string())).step, 10);
}

}  // namespace
}  // namespace tr
