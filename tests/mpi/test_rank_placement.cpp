// parallel/gpu_placement.h: before NCCL is set up the world compares every device group's GPUs,
// and two ranks of a group on one GPU end the run on every rank with one line. The GPUs here are
// made-up UUIDs, as a node with fewer GPUs than ranks would give them (node-local rank modulo
// the GPU count), so the check runs where there is no GPU at all.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "layers/error.h"
#include "mpi/mpi_main.h"
#include "parallel/gpu_placement.h"
#include "parallel/process_grid.h"

namespace tr {
namespace {

using testing::g_runtime;

// The UUID of GPU `index` of a made-up node.
std::string fake_gpu(int index) {
  return "GPU-0000000" + std::to_string(index) + "-0000-0000-0000-000000000000";
}

// What require_distinct_gpus said on this rank ("" when it let the world through).
std::string verdict(const GpuPlacement& mine) {
  try {
    require_distinct_gpus(g_runtime->world(), mine);
    return "";
  } catch (const UserError& e) {
    return e.what();
  }
}

// A rank of one made-up job: world rank, TP group, DP group, host, GPU UUID, PCI address.
GpuPlacement placed(int rank, const std::string& host, const std::string& uuid,
                    const std::string& pci = "") {
  return {rank, 0, rank, host, uuid, pci};
}

TEST(GpuPlacement, ProblemNamesTheFirstTwoRanksOnOneGpu) {
  const std::vector<GpuPlacement> distinct = {placed(0, "node-a", fake_gpu(0)),
                                              placed(1, "node-a", fake_gpu(1)),
                                              placed(2, "node-b", fake_gpu(2))};
  EXPECT_EQ(shared_gpu_problem(distinct, "dp"), "");
  const std::vector<GpuPlacement> shared = {placed(0, "node-a", fake_gpu(0)),
                                            placed(2, "node-a", fake_gpu(1)),
                                            placed(4, "node-a", fake_gpu(1))};
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

TEST(GpuPlacement, OnePciAddressOnOneHostIsOneGpu) {
  // MIG instances of one GPU: UUIDs of their own, one PCI address; NCCL refuses them as one GPU.
  const std::string line = shared_gpu_problem(
      {placed(0, "node-a", "MIG-a", "0000:3b:00"), placed(1, "node-a", "MIG-b", "0000:3b:00")},
      "dp");
  EXPECT_NE(line.find("ranks 0 and 1 of the same dp group would share one GPU (PCI 0000:3b:00 on "
                      "node-a: MIG-a and MIG-b)"),
            std::string::npos)
      << line;
  // The same address on two hosts, or on hosts without a name: two GPUs.
  EXPECT_EQ(shared_gpu_problem({placed(0, "node-a", fake_gpu(0), "0000:3b:00"),
                                placed(1, "node-b", fake_gpu(1), "0000:3b:00")},
                               "dp"),
            "");
  EXPECT_EQ(shared_gpu_problem({placed(0, "", fake_gpu(0), "0000:3b:00"),
                                placed(1, "", fake_gpu(1), "0000:3b:00")},
                               "dp"),
            "");
}

TEST(GpuPlacement, GroupOfDistinctGpusPasses) {
  const int r = g_runtime->world().rank();
  EXPECT_EQ(verdict(placed(r, host_name(), fake_gpu(r))), "");  // one TP group of all ranks
}

TEST(GpuPlacement, EveryRankEndsWhenTwoShareAGpu) {
  // One GPU for the whole job: every rank's record names the same UUID.
  const int r = g_runtime->world().rank();
  const std::string said = verdict(placed(r, host_name(), fake_gpu(0)));
  EXPECT_NE(said.find("ranks 0 and 1 of the same tp group would share one GPU (" + fake_gpu(0)),
            std::string::npos)
      << said;
}

TEST(GpuPlacement, TensorParallelRanksOnDistinctGpusButDataParallelOnes) {
  // Ranks choose GPUs by node-local rank modulo the node's GPUs: with half as many GPUs as
  // ranks, TP x DP = 2 x (n / 2) puts each TP pair on two GPUs, and each DP group's ranks on
  // one GPU. The TP groups pass; the DP groups end the run, on every rank.
  Communicator& world = g_runtime->world();
  const int n = world.size(), r = world.rank();
  g_runtime->setup_grid(2, n / 2, 60);
  const ProcessGrid& grid = g_runtime->grid();
  const std::string said =
      verdict({r, grid.dp_rank, grid.tp_rank, host_name(), fake_gpu(r % 2), ""});
  if (n < 4) {
    EXPECT_EQ(said, "");  // DP groups of one rank: nothing to share
  } else {
    // The first DP group (TP rank 0: ranks 0, 2, ...) is the one every rank names.
    EXPECT_NE(said.find("ranks 0 and 2 of the same dp group"), std::string::npos) << said;
  }
  g_runtime->setup_grid(1, n, 60);
}

TEST(GpuPlacement, RanksOfSoundGroupsEndWithTheOthers) {
  // Two nodes, TP groups {0, 1}, {2, 3}, ...: the last group's node has one GPU for its two
  // ranks, every other rank a GPU of its own. Every rank ends, also those whose own groups are
  // sound, so that none waits in a later collective for ranks that have left.
  Communicator& world = g_runtime->world();
  const int n = world.size(), r = world.rank();
  g_runtime->setup_grid(2, n / 2, 60);
  const ProcessGrid& grid = g_runtime->grid();
  const bool last_pair = r >= n - 2;
  const std::string gpu = last_pair ? fake_gpu(9) : fake_gpu(r);
  const std::string said =
      verdict({r, grid.dp_rank, grid.tp_rank, last_pair ? "node-b" : "node-a", gpu, ""});
  EXPECT_NE(said.find("ranks " + std::to_string(n - 2) + " and " + std::to_string(n - 1) +
                      " of the same tp group would share one GPU (" + fake_gpu(9) + " on node-b)"),
            std::string::npos)
      << said;
  g_runtime->setup_grid(1, n, 60);
}

}  // namespace
}  // namespace tr

TR_MPI_TEST_MAIN
