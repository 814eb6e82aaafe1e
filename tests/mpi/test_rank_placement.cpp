// parallel/gpu_placement.h: the ranks of a device group compare their GPUs before NCCL is set
// up, and two ranks on one GPU end the run on every rank with one line. The GPUs here are
// made-up UUIDs, as a node with fewer GPUs than ranks would give them (node-local rank modulo
// the GPU count), so the check runs where there is no GPU at all.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "layers/error.h"
#include "mpi/mpi_main.h"
#include "parallel/gpu_placement.h"

namespace tr {
namespace {

using testing::g_runtime;

// The UUID of GPU `index` of a made-up node.
std::string fake_gpu(int index) {
  return "GPU-0000000" + std::to_string(index) + "-0000-0000-0000-000000000000";
}

// What require_distinct_gpus said on this rank ("" when it let the group through).
std::string verdict(Communicator& group, const GpuPlacement& mine) {
  try {
    require_distinct_gpus(group, mine);
    return "";
  } catch (const UserError& e) {
    return e.what();
  }
}

TEST(GpuPlacement, ProblemNamesTheFirstTwoRanksOnOneGpu) {
  const std::vector<GpuPlacement> distinct = {
      {0, "node-a", fake_gpu(0)}, {1, "node-a", fake_gpu(1)}, {2, "node-b", fake_gpu(2)}};
  EXPECT_EQ(shared_gpu_problem(distinct, "dp"), "");
  const std::vector<GpuPlacement> shared = {
      {0, "node-a", fake_gpu(0)}, {2, "node-a", fake_gpu(1)}, {4, "node-a", fake_gpu(1)}};
  const std::string line = shared_gpu_problem(shared, "tp");
  EXPECT_NE(line.find("train.device: cuda: ranks 2 and 4 of the same tp group would share one "
                      "GPU (" +
                      fake_gpu(1) + " on node-a)"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("at most as many ranks per node as it has GPUs"), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);  // one line
  EXPECT_EQ(shared_gpu_problem({}, "dp"), "");
  EXPECT_EQ(shared_gpu_problem({shared[0]}, "dp"), "");
}

TEST(GpuPlacement, GroupOfDistinctGpusPasses) {
  Communicator& world = g_runtime->world();
  const int r = world.rank();
  EXPECT_EQ(verdict(world, {r, host_name(), fake_gpu(r)}), "");
}

TEST(GpuPlacement, EveryRankEndsWhenTwoShareAGpu) {
  // One GPU for the whole job: every rank's record names the same UUID.
  Communicator& world = g_runtime->world();
  const int r = world.rank();
  const std::string said = verdict(world, {r, host_name(), fake_gpu(0)});
  EXPECT_NE(said.find("ranks 0 and 1 of the same world group would share one GPU (" + fake_gpu(0)),
            std::string::npos)
      << said;
}

TEST(GpuPlacement, TensorParallelRanksOnDistinctGpusButDataParallelOnes) {
  // Ranks choose GPUs by node-local rank modulo the node's GPUs: with half as many GPUs as
  // ranks, TP x DP = 2 x (n / 2) puts each TP pair on two GPUs, and each DP group's ranks on
  // one GPU. The TP groups pass; the DP groups end the run.
  Communicator& world = g_runtime->world();
  const int n = world.size(), r = world.rank();
  g_runtime->setup_grid(2, n / 2, 60);
  const GpuPlacement mine{r, host_name(), fake_gpu(r % 2)};
  EXPECT_EQ(verdict(g_runtime->tp(), mine), "");
  const std::string said = verdict(g_runtime->dp(), mine);
  if (n < 4) {
    EXPECT_EQ(said, "");  // DP groups of one rank: nothing to share
  } else {
    const int first = r % 2;  // the DP group of TP rank r % 2: ranks first, first + 2, ...
    EXPECT_NE(said.find("ranks " + std::to_string(first) + " and " + std::to_string(first + 2) +
                        " of the same dp group"),
              std::string::npos)
        << said;
  }
  g_runtime->setup_grid(1, n, 60);
}

}  // namespace
}  // namespace tr

TR_MPI_TEST_MAIN
