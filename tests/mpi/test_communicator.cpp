// The MPI communicator's collectives against values every rank can compute by itself.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "mpi/mpi_main.h"

namespace tr {
namespace {

using testing::g_runtime;

TEST(MpiCommunicator, AllReduceSumAndMaxInPlace) {
  Communicator& world = g_runtime->world();
  const int n = world.size(), r = world.rank();
  std::vector<float> values = {1.0f * r, 2.0f, -1.0f * r};
  world.all_reduce(values.data(), 3, DType::f32, ReduceOp::sum);
  EXPECT_FLOAT_EQ(values[0], n * (n - 1) / 2.0f);
  EXPECT_FLOAT_EQ(values[1], 2.0f * n);
  std::vector<double> m = {static_cast<double>(r)};
  world.all_reduce(m.data(), 1, DType::f64, ReduceOp::max);
  EXPECT_EQ(m[0], n - 1);
  EXPECT_EQ(world.all_reduce_scalar(std::int64_t{r + 1}),
            static_cast<std::int64_t>(n * (n + 1) / 2));
}

TEST(MpiCommunicator, AsyncAllReducesCompleteInOrder) {
  Communicator& world = g_runtime->world();
  const int n = world.size();
  std::vector<std::vector<float>> buckets(6, std::vector<float>(1000));
  std::vector<std::unique_ptr<CommRequest>> requests;
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    std::fill(buckets[b].begin(), buckets[b].end(), static_cast<float>(b + world.rank()));
    requests.push_back(world.all_reduce_async(buckets[b].data(), 1000, DType::f32, ReduceOp::sum));
  }
  for (auto& request : requests) request->wait();
  for (std::size_t b = 0; b < buckets.size(); ++b)
    EXPECT_FLOAT_EQ(buckets[b][999], static_cast<float>(b * n + n * (n - 1) / 2));
}

TEST(MpiCommunicator, ReduceScatterAllGatherBroadcast) {
  Communicator& world = g_runtime->world();
  const int n = world.size(), r = world.rank();
  const int count = 3;
  std::vector<double> send(static_cast<std::size_t>(n * count));
  std::iota(send.begin(), send.end(), 100.0 * r);
  std::vector<double> recv(count);
  world.reduce_scatter(send.data(), recv.data(), count, DType::f64, ReduceOp::sum);
  for (int i = 0; i < count; ++i) {
    double expected = 0;
    for (int q = 0; q < n; ++q) expected += 100.0 * q + r * count + i;
    EXPECT_DOUBLE_EQ(recv[i], expected);
  }
  std::vector<std::int32_t> mine = {r, -r};
  std::vector<std::int32_t> all(static_cast<std::size_t>(2 * n));
  world.all_gather(mine.data(), all.data(), 2, DType::i32);
  for (int q = 0; q < n; ++q) {
    EXPECT_EQ(all[2 * q], q);
    EXPECT_EQ(all[2 * q + 1], -q);
  }
  std::int64_t token = r == 0 ? 42 : 0;
  world.broadcast(&token, 1, DType::i64, 0);
  EXPECT_EQ(token, 42);
  world.barrier();
}

TEST(MpiCommunicator, GridGroupsFollowMegatronLayout) {
  const int n = g_runtime->world_size();
  if (n % 2 != 0) GTEST_SKIP() << "needs an even world";
  const ProcessGrid g = ProcessGrid::make(n, g_runtime->world_rank(), 2, n / 2);
  EXPECT_EQ(g.tp_rank, g_runtime->world_rank() % 2);
  EXPECT_EQ(g.dp_rank, g_runtime->world_rank() / 2);
  EXPECT_THROW(ProcessGrid::make(n, 0, 3, n), UserError);
}

}  // namespace
}  // namespace tr

TR_MPI_TEST_MAIN
