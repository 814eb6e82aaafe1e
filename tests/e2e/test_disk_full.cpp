// Issue 5, acceptance "disk full": when a checkpoint cannot be written (a file-size limit,
// RLIMIT_FSIZE, makes writes fail with EFBIG as on a full disk) the trainer stops at once with
// a one-line error and exit code 3 (the run failed), leaves the previous checkpoint intact and
// named by `latest`, leaves no half-written one, and never trains past the failed save. An
// unwritable checkpoint directory is found before training starts (exit 2, naming it).
#include <gtest/gtest.h>

#include <filesystem>

#include "e2e/child_process.h"
#include "e2e/cli_runner.h"
#include "e2e/resume_helpers.h"
#include "trainer/checkpoint.h"

namespace tr {
namespace {

namespace fs = std::filesystem;
using namespace tr::testing;

// The line of `output` that starts with "trainer:" (the error), or "".
std::string error_line(const std::string& output) {
  const std::size_t at = output.find("trainer:");
  return at == std::string::npos ? "" : output.substr(at, output.find('\n', at) - at);
}

TEST(DiskFull, FailsClearlyAndKeepsThePreviousCheckpoint) {
  use_one_thread();
  const fs::path dir = scratch_dir("disk_full");
  const fs::path run = dir / "run";
  const RunSetup setup{"vit", {"checkpoint.every_steps=4", "checkpoint.keep=1"}};
  const CliResult first = run_trainer(setup.command(run, 4));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const fs::path previous = run / "checkpoints" / "step_00000004";
  const auto model_bytes = fs::file_size(previous / "model_tp00.h5");
  const std::string meta_before = read_text(previous / "meta.yaml");

  // Every file may grow to half the model file: metrics.jsonl and the logs fit, the next
  // checkpoint's model file does not.
  ChildOptions limit;
  limit.file_size_limit = static_cast<long long>(model_bytes / 2);
  TrainerProcess limited(setup.args(run, 12), dir / "limited.log", limit);
  const int code = limited.wait(120);
  const std::string out = limited.output();
  EXPECT_EQ(code, 3) << out;
  const std::string error = error_line(out);
  EXPECT_NE(error.find("checkpoint"), std::string::npos) << out;
  EXPECT_NE(error.find("step_00000008"), std::string::npos) << out;
  EXPECT_NE(error.find("File too large"), std::string::npos) << out;
  EXPECT_EQ(out.find("HDF5-DIAG"), std::string::npos) << out;
  std::printf("[ measured ] exit %d: %s\n", code, error.c_str());

  // Training stopped at the failed save; the previous checkpoint is untouched and usable.
  EXPECT_EQ(step_losses(run).rbegin()->first, 8) << "trained past the failed checkpoint";
  EXPECT_EQ(find_latest_checkpoint(run.string()), previous.string());
  EXPECT_EQ(read_text(run / "checkpoints" / "latest"), "step_00000004\n");
  EXPECT_EQ(read_text(previous / "meta.yaml"), meta_before);
  EXPECT_NO_THROW(read_checkpoint_meta(previous.string()));
  for (const auto& entry : fs::directory_iterator(run / "checkpoints"))
    EXPECT_TRUE(entry.path().filename() == "step_00000004" || entry.path().filename() == "latest")
        << "left behind: " << entry.path();

  // With space again the run resumes from it and continues exactly.
  const CliResult resumed = run_trainer(setup.command(run, 12));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("(step 4)"), std::string::npos) << resumed.output;
  const CliResult ref = run_trainer(setup.command(dir / "ref", 12));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  EXPECT_EQ(expect_bitwise_equal(step_losses(dir / "ref"), step_losses(run)), 12);
  EXPECT_TRUE(repeated_steps(run).empty()) << "steps logged twice in metrics.jsonl";
  if (!HasFailure()) fs::remove_all(dir);
}

// A checkpoint directory that cannot be created (a file stands in its place; permissions would
// not stop root) is reported before the first step, not after hours of training.
TEST(DiskFull, UnwritableCheckpointDirectoryIsFoundBeforeTraining) {
  use_one_thread();
  const fs::path dir = scratch_dir("unwritable");
  const fs::path run = dir / "run";
  fs::create_directories(run);
  { std::ofstream(run / "checkpoints") << "not a directory\n"; }
  const RunSetup setup{"vit", {"checkpoint.every_steps=4"}};
  const CliResult r = run_trainer(setup.command(run, 8));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(error_line(r.output).find((run / "checkpoints").string()), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run / "metrics.jsonl")) << "trained without a checkpoint directory";
  if (!HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace tr
