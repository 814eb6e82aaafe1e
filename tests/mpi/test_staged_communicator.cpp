// The staged communicator (parallel.gpu_comm: mpi) over the world's MPI communicator, with
// host buffers standing in for device memory: every collective must give what the MPI
// communicator gives, copy "device" buffers through the host exactly once each way, sum bf16 in
// fp32 with one rounding, and leave host buffers to MPI without a copy.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "layers/cpu/bf16.h"
#include "mpi/mpi_main.h"
#include "parallel/nccl_communicator.h"
#include "parallel/runtime.h"
#include "parallel/staged_communicator.h"

namespace tr {
namespace {

using testing::g_runtime;

// Buffers registered here count as device memory; copies touching them are counted.
struct FakeDevice {
  std::vector<std::pair<const std::byte*, std::size_t>> ranges;
  int copies = 0;

  template <typename T>
  T* add(std::vector<T>& v) {
    ranges.emplace_back(reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(T));
    return v.data();
  }
  bool holds(const void* p) const {
    const auto* b = static_cast<const std::byte*>(p);
    for (const auto& [begin, bytes] : ranges)
      if (b >= begin && b < begin + bytes) return true;
    return false;
  }
  StagingMemory memory() {
    return {[this](const void* p) { return holds(p); },
            [this](void* dst, const void* src, std::size_t bytes) {
              if (holds(dst) || holds(src)) ++copies;
              std::memcpy(dst, src, bytes);
            }};
  }
};

std::uint16_t bf16(float x) {
  return cpu::f32_to_bf16_bits(x);
}

TEST(StagedCommunicator, AllReduceOfDeviceBuffersEqualsMpis) {
  FakeDevice device;
  Communicator& world = g_runtime->world();
  auto staged = make_staged_communicator(world, device.memory());
  const int n = world.size(), r = world.rank();
  EXPECT_EQ(staged->size(), n);
  EXPECT_EQ(staged->rank(), r);
  EXPECT_EQ(staged->name(), "world");

  std::vector<float> on_device = {1.0f * r, 2.5f, -3.0f * r, 0.125f};
  std::vector<float> on_host = on_device;
  staged->all_reduce(device.add(on_device), 4, DType::f32, ReduceOp::sum);
  world.all_reduce(on_host.data(), 4, DType::f32, ReduceOp::sum);
  EXPECT_EQ(on_device, on_host);
  EXPECT_EQ(device.copies, 2);  // to the host and back

  std::vector<std::int64_t> largest = {r, -r};
  staged->all_reduce(device.add(largest), 2, DType::i64, ReduceOp::max);
  EXPECT_EQ(largest, (std::vector<std::int64_t>{n - 1, 0}));
}

TEST(StagedCommunicator, HostBuffersGoToMpiWithoutCopies) {
  FakeDevice device;
  Communicator& world = g_runtime->world();
  auto staged = make_staged_communicator(world, device.memory());
  const int n = world.size();
  std::vector<double> values = {1.0, 2.0};
  staged->all_reduce(values.data(), 2, DType::f64, ReduceOp::sum);
  EXPECT_EQ(values, (std::vector<double>{1.0 * n, 2.0 * n}));
  EXPECT_EQ(staged->all_reduce_scalar(std::int64_t{3}), 3 * n);
  auto request = staged->all_reduce_async(values.data(), 2, DType::f64, ReduceOp::sum);
  request->wait();
  EXPECT_EQ(values, (std::vector<double>{1.0 * n * n, 2.0 * n * n}));
  EXPECT_EQ(device.copies, 0);
}

// bf16 is summed in fp32 and rounded once: 1 + r/128 over the ranks is exact in fp32, and
// its bf16 rounding is the expected value (a sum in bf16 would round at every addition).
TEST(StagedCommunicator, Bf16SumsInFp32AndRoundsOnce) {
  FakeDevice device;
  Communicator& world = g_runtime->world();
  auto staged = make_staged_communicator(world, device.memory());
  const int n = world.size(), r = world.rank();
  float exact = 0;
  for (int q = 0; q < n; ++q) exact += 1.0f + q / 128.0f;
  std::vector<std::uint16_t> x = {bf16(1.0f + r / 128.0f), bf16(-2.0f)};
  staged->all_reduce(device.add(x), 2, DType::bf16, ReduceOp::sum);
  EXPECT_EQ(x[0], bf16(exact));
  EXPECT_EQ(x[1], bf16(-2.0f * n));

  // Host bf16 buffers are staged too: MPI cannot sum bf16.
  std::vector<std::uint16_t> host = {bf16(0.5f)};
  staged->all_reduce(host.data(), 1, DType::bf16, ReduceOp::sum);
  EXPECT_EQ(host[0], bf16(0.5f * n));
}

TEST(StagedCommunicator, AsyncAllReducesOverlapAndLandOnWait) {
  FakeDevice device;
  Communicator& world = g_runtime->world();
  auto staged = make_staged_communicator(world, device.memory());
  const int n = world.size(), r = world.rank();
  std::vector<std::vector<float>> buckets(5, std::vector<float>(3000));
  std::vector<std::unique_ptr<CommRequest>> requests;
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    std::fill(buckets[b].begin(), buckets[b].end(), static_cast<float>(b + r));
    requests.push_back(
        staged->all_reduce_async(device.add(buckets[b]), 3000, DType::f32, ReduceOp::sum));
  }
  // The buffers stay as they were until wait() copies the sums back.
  EXPECT_EQ(buckets[0][0], static_cast<float>(r));
  for (auto& request : requests) {
    request->wait();
    EXPECT_TRUE(request->test());
    request->wait();  // a second wait changes nothing
  }
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    const float expected = static_cast<float>(b * n + n * (n - 1) / 2);
    EXPECT_EQ(buckets[b][0], expected);
    EXPECT_EQ(buckets[b][2999], expected);
  }
  EXPECT_EQ(device.copies, 2 * 5);
  // A request dropped without wait() finishes its reduction first (no write into freed memory).
  std::vector<float> dropped(100, 1.0f);
  staged->all_reduce_async(device.add(dropped), 100, DType::f32, ReduceOp::sum).reset();
  staged->barrier();
}

TEST(StagedCommunicator, ReduceScatterAllGatherBroadcastOfDeviceBuffers) {
  FakeDevice device;
  Communicator& world = g_runtime->world();
  auto staged = make_staged_communicator(world, device.memory());
  const int n = world.size(), r = world.rank();
  const int count = 3;

  std::vector<float> send(static_cast<std::size_t>(n * count));
  std::iota(send.begin(), send.end(), 10.0f * r);
  std::vector<float> recv(count), expected(count);
  staged->reduce_scatter(device.add(send), device.add(recv), count, DType::f32, ReduceOp::sum);
  world.reduce_scatter(send.data(), expected.data(), count, DType::f32, ReduceOp::sum);
  EXPECT_EQ(recv, expected);

  std::vector<std::uint16_t> bf16_send(static_cast<std::size_t>(n * count), bf16(0.25f * r));
  std::vector<std::uint16_t> bf16_recv(count);
  staged->reduce_scatter(device.add(bf16_send), device.add(bf16_recv), count, DType::bf16,
                         ReduceOp::sum);
  EXPECT_EQ(bf16_recv[0], bf16(0.25f * n * (n - 1) / 2));

  // bf16 moved, not summed: every rank's bits arrive as they were.
  std::vector<std::uint16_t> mine = {bf16(1.0f + r), bf16(-0.1f * r)};
  std::vector<std::uint16_t> all(static_cast<std::size_t>(2 * n));
  staged->all_gather(device.add(mine), device.add(all), 2, DType::bf16);
  for (int q = 0; q < n; ++q) {
    EXPECT_EQ(all[2 * q], bf16(1.0f + q));
    EXPECT_EQ(all[2 * q + 1], bf16(-0.1f * q));
  }

  std::vector<std::int32_t> value = {r == n - 1 ? 42 : -1, r == n - 1 ? 7 : -1};
  staged->broadcast(device.add(value), 2, DType::i32, n - 1);
  EXPECT_EQ(value, (std::vector<std::int32_t>{42, 7}));
}

TEST(StagedCommunicator, AutoTransportIsNcclWhereBuilt) {
  EXPECT_EQ(device_transport_from_name("auto"),
            nccl_built() ? DeviceTransport::nccl : DeviceTransport::mpi);
  EXPECT_EQ(device_transport_from_name("mpi"), DeviceTransport::mpi);
  EXPECT_EQ(device_transport_from_name("nccl"), DeviceTransport::nccl);
}

}  // namespace
}  // namespace tr

TR_MPI_TEST_MAIN
