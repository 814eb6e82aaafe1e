// Issue 5, acceptance "kill -9 at random moments (5 tries) then resume": a run saving a
// checkpoint every 4 steps (saves take most of its time: fsync) is killed with SIGKILL at random
// moments, five times in a row, each time resumed (--resume auto). After every kill the newest
// complete checkpoint is intact (its checksums verify) and `latest` names an intact one, never a
// half-written one; kills that land inside a save leave only a step_*.tmp directory, which
// resume ignores and removes. The final resumed run logs bit for bit the losses of an
// uninterrupted one, each step once.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "e2e/child_process.h"
#include "e2e/cli_runner.h"
#include "e2e/resume_helpers.h"
#include "trainer/checkpoint.h"

namespace tr {
namespace {

namespace fs = std::filesystem;
using namespace tr::testing;

constexpr std::int64_t kEndless = 1000000;

bool has_tmp_dir(const fs::path& checkpoints) {
  if (!fs::is_directory(checkpoints)) return false;
  for (const auto& entry : fs::directory_iterator(checkpoints))
    if (entry.path().extension() == ".tmp" && entry.is_directory()) return true;
  return false;
}

TEST(KillNine, RandomKillsThenResumeIsBitwise) {
  use_one_thread();
  const fs::path dir = scratch_dir("kill_nine");
  const fs::path run = dir / "run";
  const RunSetup setup{"vit", {"checkpoint.every_steps=4", "checkpoint.keep=2"}};
  const unsigned seed = std::random_device{}();
  std::printf("[ seed     ] %u\n", seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_us(0, 30000);
  int during_save = 0, usable = 0;
  std::size_t rows = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    TrainerProcess child(setup.args(run, kEndless), dir / ("try" + std::to_string(attempt)));
    // Kill once this attempt has trained at least one step (and the run has a first checkpoint
    // to fall back on), after a random delay.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    auto lines = [&] { return count_lines(read_text(run / "metrics.jsonl")); };
    while ((static_cast<std::size_t>(lines()) <= rows ||
            !fs::exists(run / "checkpoints" / "latest")) &&
           !child.exited() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_FALSE(child.exited()) << child.output();
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    child.signal(SIGKILL);
    ASSERT_EQ(child.wait(30), 128 + SIGKILL);
    rows = static_cast<std::size_t>(lines());

    const bool in_save = has_tmp_dir(run / "checkpoints");
    during_save += in_save;
    // The newest complete checkpoint verifies, and `latest` names an intact checkpoint.
    const std::string newest = find_latest_checkpoint(run.string());
    ASSERT_FALSE(newest.empty()) << "no usable checkpoint after kill " << attempt;
    const CheckpointMeta meta = read_checkpoint_meta(newest);
    std::string latest = read_text(run / "checkpoints" / "latest");
    ASSERT_FALSE(latest.empty());
    latest.pop_back();  // newline
    EXPECT_NO_THROW(read_checkpoint_meta((run / "checkpoints" / latest).string()))
        << "`latest` names " << latest;
    ++usable;
    std::printf("[ kill %d   ] after %zu logged steps, %s; newest checkpoint step %lld\n", attempt,
                rows, in_save ? "inside a save (tmp dir left)" : "between saves",
                static_cast<long long>(meta.step));
  }
  const std::int64_t total = step_losses(run).rbegin()->first + 3;
  const CliResult resumed = run_trainer(setup.command(run, total));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_FALSE(has_tmp_dir(run / "checkpoints")) << "leftover temporary checkpoint directories";
  const CliResult ref = run_trainer(setup.command(dir / "ref", total));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  EXPECT_EQ(expect_bitwise_equal(step_losses(dir / "ref"), step_losses(run)), total);
  EXPECT_TRUE(repeated_steps(run).empty()) << "steps logged twice in metrics.jsonl";
  std::printf(
      "[ measured ] %d/5 kills left a usable checkpoint, %d inside a save; %lld steps "
      "bitwise equal\n",
      usable, during_save, static_cast<long long>(total));
  if (!HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace tr
