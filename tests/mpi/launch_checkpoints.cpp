// Checkpoints of multi-process runs (issue 5).
// - Acceptance "resume under another layout": a checkpoint written by a run of DP 2 with ZeRO-1
//   (optimizer state sharded in optim_rank0000/0001.h5) continues under DP 1 and DP 4, with and
//   without ZeRO, logging losses within 1e-5 (relative) of the uninterrupted DP 2 run. Then
//   `trainer inspect` and `trainer export` on the sharded checkpoint.
// - SIGUSR1 to mpirun (Slurm preemption; mpirun forwards it to every rank): all ranks stop after
//   the same step with one checkpoint of it, exit 0, and the resumed run continues the
//   uninterrupted one.
// - Disk full on one rank only (its shard cannot be written): every rank stops with exit 3 and
//   the previous checkpoint stays intact.
//
// This test launches `mpirun ... trainer train` itself (it is not run under mpirun), as users
// do. Layouts are rows of a table (tensor x data, zero): tensor-parallel ones join it as
// parallel.tensor > 1 trains.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include "data/h5.h"
#include "e2e/child_process.h"
#include "e2e/cli_runner.h"
#include "e2e/resume_helpers.h"
#include "trainer/checkpoint.h"

namespace tr {
namespace {

namespace fs = std::filesystem;
using namespace tr::testing;

struct Layout {
  int tensor = 1, data = 1, zero = 0;
  int processes() const { return tensor * data; }
  std::string name() const {
    return "tp" + std::to_string(tensor) + "_dp" + std::to_string(data) + "_zero" +
           std::to_string(zero);
  }
};

// Runs `trainer <args>` under `layout`: alone for one process, else under mpirun.
CliResult run_layout(const Layout& layout, const std::string& args) {
  std::string command = trainer_path();
  if (layout.processes() > 1)
    command = std::string(TR_MPIEXEC) + " --oversubscribe --bind-to none -np " +
              std::to_string(layout.processes()) + " " + command;
  command += " " + args + " --set parallel.tensor=" + std::to_string(layout.tensor) +
             " --set parallel.data=" + std::to_string(layout.data) +
             " --set parallel.zero=" + std::to_string(layout.zero);
  CliResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

constexpr std::int64_t kSteps = 12, kResumeAt = 6;

struct Case {
  std::string name, model;
  std::vector<std::string> sets;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class ResumeLayouts : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() { use_one_thread(); }
};

TEST_P(ResumeLayouts, ShardedCheckpointContinuesUnderOtherLayouts) {
  const std::string model = GetParam().name;
  const fs::path dir = scratch_dir("resume_layouts_" + model);
  // micro_batch 0: global 8 split over the DP ranks, so every layout below divides it.
  RunSetup setup{GetParam().model, {"train.micro_batch=0", "checkpoint.every_steps=6"}};
  setup.sets.insert(setup.sets.end(), GetParam().sets.begin(), GetParam().sets.end());
  const Layout written{1, 2, 1};
  const CliResult ref = run_layout(written, setup.command(dir / "ref", kSteps));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  const auto reference = step_losses(dir / "ref");
  ASSERT_EQ(reference.size(), static_cast<std::size_t>(kSteps));
  const fs::path checkpoint = dir / "ref" / "checkpoints" / "step_00000006";
  ASSERT_TRUE(fs::exists(checkpoint / "optim_rank0001.h5")) << "not a ZeRO-1 checkpoint";

  for (const Layout& layout :
       {Layout{1, 1, 0}, Layout{1, 1, 1}, Layout{1, 4, 1}, Layout{1, 4, 0}, Layout{1, 2, 0}}) {
    const fs::path run = dir / layout.name();
    const CliResult r =
        run_layout(layout, setup.command(run, kSteps, "--resume " + checkpoint.string()));
    ASSERT_EQ(r.exit_code, 0) << layout.name() << ": " << r.output;
    const auto losses = step_losses(run);
    ASSERT_EQ(losses.size(), static_cast<std::size_t>(kSteps - kResumeAt)) << layout.name();
    double worst = 0;
    for (const auto& [step, loss] : losses) {
      const double rel = std::abs(loss - reference.at(step)) / std::abs(reference.at(step));
      EXPECT_LE(rel, 1e-5) << layout.name() << " step " << step;
      worst = std::max(worst, rel);
    }
    std::printf(
        "[ measured ] %s %s -> %s: steps %lld..%lld, largest relative loss "
        "difference %.2e\n",
        model.c_str(), written.name().c_str(), layout.name().c_str(),
        static_cast<long long>(kResumeAt + 1), static_cast<long long>(kSteps), worst);
  }

  // inspect names the layout and every shard; export writes the full model of the sharded run.
  const CliResult inspect = run_trainer("inspect " + checkpoint.string());
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  for (const char* text : {"checksums verified", "tensor 1 x data 2, zero 1", "optim_rank0000.h5",
                           "optim_rank0001.h5", "step: 6"})
    EXPECT_NE(inspect.output.find(text), std::string::npos) << text << " in " << inspect.output;
  const fs::path weights = dir / "exported.h5";
  const CliResult exported =
      run_trainer("export --checkpoint " + (dir / "ref").string() + " --out " + weights.string());
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  h5::File a = h5::File::open(weights.string());
  h5::File b = h5::File::open(
      checkpoint_model_file((dir / "ref" / "checkpoints" / "step_00000012").string()));
  EXPECT_EQ(a.read_attr_string("/", "model_type"), b.read_attr_string("/", "model_type"));
  ASSERT_EQ(a.datasets("/"), b.datasets("/"));
  for (const std::string& name : a.datasets("/"))
    EXPECT_EQ(a.read<float>(name), b.read<float>(name)) << name;
  const CliResult described = run_trainer("inspect " + weights.string());
  EXPECT_EQ(described.exit_code, 0) << described.output;
  if (!HasFailure()) fs::remove_all(dir);
}

TEST(CheckpointFaults, SigusrToMpirunStopsEveryRankWithACheckpoint) {
  use_one_thread();
  const fs::path dir = scratch_dir("mpi_sigusr1");
  const fs::path run = dir / "run";
  const RunSetup setup{
      "vit",
      {"train.micro_batch=0", "checkpoint.every_steps=0", "parallel.data=2", "parallel.zero=1"}};
  std::int64_t stopped_at = 0;
  {
    ChildOptions mpirun;
    mpirun.launcher = {TR_MPIEXEC, "--oversubscribe", "--bind-to", "none", "-np", "2"};
    TrainerProcess job(setup.args(run, 1000000), dir / "job.log", mpirun);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (step_losses(run).size() < 3 && !job.exited() &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_FALSE(job.exited()) << job.output();
    job.signal(SIGUSR1);
    ASSERT_EQ(job.wait(60), 0) << job.output();
    EXPECT_NE(job.output().find("stopped by SIGUSR1"), std::string::npos) << job.output();
    stopped_at = step_losses(run).rbegin()->first;
  }
  const std::string latest = find_latest_checkpoint(run.string());
  ASSERT_FALSE(latest.empty());
  EXPECT_EQ(read_checkpoint_meta(latest).step, stopped_at);
  EXPECT_TRUE(fs::exists(fs::path(latest) / "optim_rank0001.h5"));

  const std::int64_t total = stopped_at + 4;
  const Layout layout{1, 2, 1};
  const CliResult ref = run_layout(layout, setup.command(dir / "ref", total));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  const CliResult resumed = run_layout(layout, setup.command(run, total));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const auto reference = step_losses(dir / "ref"), losses = step_losses(run);
  ASSERT_EQ(losses.size(), reference.size());
  double worst = 0;
  for (const auto& [step, loss] : reference)
    worst = std::max(worst, std::abs(losses.at(step) - loss) / std::abs(loss));
  EXPECT_LE(worst, 1e-5);
  std::printf(
      "[ measured ] SIGUSR1 to mpirun after step %lld: exit 0; resumed to %lld, largest "
      "relative loss difference %.2e\n",
      static_cast<long long>(stopped_at), static_cast<long long>(total), worst);
  if (!HasFailure()) fs::remove_all(dir);
}

// Rank 1 alone may write no file over 10-20 KB (sh's `ulimit -f` counts 512- or 1024-byte
// blocks), less than its optimizer shard: rank 0 writes its parts, rank 1 fails with EFBIG.
// TCP between the ranks: shared-memory transport files would hit the limit first.
TEST(CheckpointFaults, DiskFullOnOneRankStopsEveryRank) {
  use_one_thread();
  const fs::path dir = scratch_dir("mpi_disk_full");
  const fs::path run = dir / "run";
  const RunSetup setup{"vit",
                       {"train.micro_batch=0", "checkpoint.every_steps=4", "checkpoint.keep=1"}};
  const Layout layout{1, 2, 1};
  const CliResult first = run_layout(layout, setup.command(run, 4));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const fs::path previous = run / "checkpoints" / "step_00000004";
  ASSERT_GT(fs::file_size(previous / "optim_rank0001.h5"), 20u * 1024);
  const std::string meta_before = read_text(previous / "meta.yaml");

  std::string command = "OMPI_MCA_btl=self,tcp " + std::string(TR_MPIEXEC) +
                        " --oversubscribe --bind-to none -np 2 sh -c 'if [ "
                        "\"$OMPI_COMM_WORLD_RANK\" = 1 ]; then ulimit -f 20; trap \"\" XFSZ; fi; "
                        "exec \"$0\" \"$@\"' " +
                        trainer_path() + " " + setup.command(run, 12) +
                        " --set parallel.data=2 --set parallel.zero=1 2>&1";
  CliResult r;
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) r.output.append(buffer, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("rank 1: checkpoint of step 8 not written"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
  EXPECT_EQ(step_losses(run).rbegin()->first, 8) << "trained past the failed checkpoint";
  EXPECT_EQ(find_latest_checkpoint(run.string()), previous.string());
  EXPECT_EQ(read_text(run / "checkpoints" / "latest"), "step_00000004\n");
  EXPECT_EQ(read_text(previous / "meta.yaml"), meta_before);
  EXPECT_FALSE(fs::exists(run / "checkpoints" / "step_00000008.tmp")) << "half-written left";
  std::printf("[ measured ] rank 1 out of space at step 8: job exit %d, step 4 checkpoint intact\n",
              r.exit_code);
  if (!HasFailure()) fs::remove_all(dir);
}

auto case_name = [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; };

// The ViT with dropout (RunSetup's 0.1); the encoder-decoder without: see below.
INSTANTIATE_TEST_SUITE_P(Models, ResumeLayouts,
                         ::testing::Values(Case{"vit", "vit", {}},
                                           Case{"encdec_pre", "encdec_pre", {"model.dropout=0"}}),
                         case_name);

// Dropout on ragged sequences: masks are keyed by (sample, head, position, feature) with fixed
// strides (layers/dropout.h), never by the padded length of the micro-batch a sequence landed
// in, so a different DP split (other micro-batches, other padding) draws the same masks.
INSTANTIATE_TEST_SUITE_P(PaddedDropout, ResumeLayouts,
                         ::testing::Values(Case{"encdec_pre_dropout", "encdec_pre", {}}),
                         case_name);

}  // namespace
}  // namespace tr
