// The NCCL communicator in a world of one (the single-process group carries the unique id):
// device all-reduce (blocking and on the side stream), broadcast, reduce-scatter, all-gather,
// host scalars staged through the device. With one rank every collective is the identity, so
// the values must come back unchanged; what this checks is that NCCL initialises, accepts the
// buffers and orders its streams with the compute stream.
#include <gtest/gtest.h>

#include "gpu/cuda_test.h"
#include "parallel/communicator.h"
#include "parallel/nccl_communicator.h"

namespace tr {
namespace {

using gpu_test::device_tensor;
using gpu_test::random_floats;
using gpu_test::to_host_vector;

#define TR_REQUIRE_NCCL()                                                      \
  do {                                                                         \
    TR_REQUIRE_CUDA();                                                         \
    if (!nccl_built()) GTEST_SKIP() << "no NCCL (this build did not find it)"; \
  } while (0)

class GpuNccl : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0 || !nccl_built()) return;
    host_ = make_single_process_communicator("dp");
    comm_ = make_nccl_communicator(*host_, 0);
  }
  std::unique_ptr<Communicator> host_, comm_;
};

TEST_F(GpuNccl, WorldOfOne) {
  TR_REQUIRE_NCCL();
  EXPECT_EQ(comm_->size(), 1);
  EXPECT_EQ(comm_->rank(), 0);
  EXPECT_EQ(comm_->name(), "dp");
}

TEST_F(GpuNccl, AllReduceLeavesValues) {
  TR_REQUIRE_NCCL();
  const auto values = random_floats(1000, 1);
  Tensor t = device_tensor(values, {1000});
  comm_->all_reduce(t, ReduceOp::sum);
  EXPECT_EQ(to_host_vector<float>(t), values);
  comm_->all_reduce(t, ReduceOp::max);
  EXPECT_EQ(to_host_vector<float>(t), values);
}

TEST_F(GpuNccl, AsyncAllReduceOrdersWithComputeStream) {
  TR_REQUIRE_NCCL();
  const auto values = random_floats(1 << 20, 2);
  Tensor t = device_tensor(values, {1 << 20});
  auto request = comm_->all_reduce_async(t.raw(), t.numel(), DType::f32, ReduceOp::sum);
  request->wait();
  EXPECT_EQ(to_host_vector<float>(t), values);  // the copy runs after the collective
  EXPECT_TRUE(request->test());
}

TEST_F(GpuNccl, BroadcastReduceScatterAllGather) {
  TR_REQUIRE_NCCL();
  const auto values = random_floats(64, 3);
  Tensor a = device_tensor(values, {64});
  comm_->broadcast(a.raw(), 64, DType::f32, 0);
  EXPECT_EQ(to_host_vector<float>(a), values);
  Tensor b = Tensor::zeros({64}, DType::f32, Device::cuda);
  comm_->reduce_scatter(a.raw(), b.raw(), 64, DType::f32, ReduceOp::sum);
  EXPECT_EQ(to_host_vector<float>(b), values);
  Tensor c = Tensor::zeros({64}, DType::f32, Device::cuda);
  comm_->all_gather(b.raw(), c.raw(), 64, DType::f32);
  EXPECT_EQ(to_host_vector<float>(c), values);
}

TEST_F(GpuNccl, HostScalarsAreStaged) {
  TR_REQUIRE_NCCL();
  EXPECT_EQ(comm_->all_reduce_scalar(2.5), 2.5);
  EXPECT_EQ(comm_->all_reduce_scalar(std::int64_t{7}, ReduceOp::max), 7);
  comm_->barrier();
}

}  // namespace
}  // namespace tr
