// Issue 5, acceptance "corrupted newest checkpoint": when a file of the newest checkpoint is
// truncated, has bytes flipped or is missing, resume finds it by the checksums of meta.yaml,
// prints a warning naming the file, and continues from the checkpoint before, logging bit for
// bit the losses of an uninterrupted run from there on.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "e2e/cli_runner.h"
#include "e2e/resume_helpers.h"

namespace tr {
namespace {

namespace fs = std::filesystem;
using namespace tr::testing;

struct Damage {
  std::string name;
  std::string file;  // inside the checkpoint
  enum Kind { truncate, flip, remove } kind;
};

void PrintTo(const Damage& d, std::ostream* os) {
  *os << d.name;
}

void damage(const fs::path& path, Damage::Kind kind) {
  ASSERT_TRUE(fs::exists(path)) << path;
  const auto size = fs::file_size(path);
  switch (kind) {
    case Damage::truncate: fs::resize_file(path, size / 2); break;
    case Damage::remove: fs::remove(path); break;
    case Damage::flip: {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      for (std::uintmax_t at : {size / 3, size / 2, size - 9}) {
        f.seekg(static_cast<std::streamoff>(at));
        const char c = static_cast<char>(f.get());
        f.seekp(static_cast<std::streamoff>(at));
        f.put(static_cast<char>(c ^ 0x5a));
      }
      break;
    }
  }
}

class CorruptCheckpoint : public ::testing::TestWithParam<Damage> {
 protected:
  static void SetUpTestSuite() { use_one_thread(); }
};

TEST_P(CorruptCheckpoint, ResumeWarnsAndFallsBackToThePreviousOne) {
  const Damage& d = GetParam();
  const fs::path dir = scratch_dir("corrupt_" + d.name);
  // Checkpoints at steps 4, 6 and 8; the newest is damaged, resume continues from step 6.
  const RunSetup setup{"encdec_pre", {"checkpoint.every_steps=2", "checkpoint.keep=3"}};
  const fs::path run = dir / "run";
  const CliResult first = run_trainer(setup.command(run, 8));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const fs::path newest = run / "checkpoints" / "step_00000008";
  damage(newest / d.file, d.kind);

  const CliResult resumed = run_trainer(setup.command(run, 12));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const std::string& out = resumed.output;
  const std::size_t warning = out.find("warning:");
  ASSERT_NE(warning, std::string::npos) << out;
  const std::string warning_line = out.substr(warning, out.find('\n', warning) - warning);
  EXPECT_NE(warning_line.find((newest / d.file).string()), std::string::npos) << warning_line;
  EXPECT_NE(out.find("step_00000006 (step 6)"), std::string::npos) << out;
  std::printf("[ measured ] %s\n", warning_line.c_str());

  const CliResult ref = run_trainer(setup.command(dir / "ref", 12));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  EXPECT_EQ(expect_bitwise_equal(step_losses(dir / "ref"), step_losses(run)), 12);
  EXPECT_TRUE(repeated_steps(run).empty()) << "steps logged twice in metrics.jsonl";
  // The damaged checkpoint was replaced by the resumed run's own step 8.
  EXPECT_EQ(run_trainer("inspect " + newest.string()).exit_code, 0);
  if (!HasFailure()) fs::remove_all(dir);
}

// A run directory whose only checkpoint is damaged: the commands that read a checkpoint (eval,
// export, translate, inspect) end with exit 2 and one line naming the directory and the damaged
// file, instead of a warning followed by "not a run directory".
TEST(CorruptCheckpointOnly, ReadingItIsOneLineNamingTheFile) {
  use_one_thread();
  const fs::path dir = scratch_dir("corrupt_only");
  const RunSetup setup{"encdec_pre", {"checkpoint.keep=1"}};
  const fs::path run = dir / "run";
  const CliResult first = run_trainer(setup.command(run, 2));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const fs::path model_file = run / "checkpoints" / "step_00000002" / "model_tp00.h5";
  damage(model_file, Damage::truncate);
  for (const std::string& command :
       {"eval --config " + (run / "config.yaml").string() + " --data " +
            std::string(TR_GOLDEN_DIR) + "/train/encdec_pre_data.h5 --checkpoint " + run.string(),
        "export --checkpoint " + run.string() + " --out " + (dir / "w.h5").string(),
        "inspect " + run.string(),
        "translate --ids --checkpoint " + run.string() + " < /dev/null"}) {
    const CliResult r = run_trainer(command);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.output;
    EXPECT_EQ(r.output, "trainer: " + run.string() + ": holds no intact checkpoint (the newest: " +
                            model_file.string() + ": checksum mismatch (truncated or corrupted))\n")
        << command;
  }
  EXPECT_FALSE(fs::exists(dir / "w.h5"));
  if (!HasFailure()) fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Damages, CorruptCheckpoint,
    ::testing::Values(Damage{"truncated_model", "model_tp00.h5", Damage::truncate},
                      Damage{"flipped_model", "model_tp00.h5", Damage::flip},
                      Damage{"flipped_optimizer", "optim_rank0000.h5", Damage::flip},
                      Damage{"missing_optimizer", "optim_rank0000.h5", Damage::remove},
                      Damage{"truncated_meta", "meta.yaml", Damage::truncate}),
    [](const ::testing::TestParamInfo<Damage>& info) { return info.param.name; });

}  // namespace
}  // namespace tr
