// The staged communicator (parallel.gpu_comm: mpi) on real device memory, in a world of one:
// CUDA's staging memory must tell device buffers from host ones, and every collective must copy
// a device buffer to the host after the work queued before it and back again, so that values
// written by a kernel just before come back as they were (with one rank every collective is the
// identity). tests/mpi/test_staged_communicator.cpp checks the reductions over several ranks.
#include <gtest/gtest.h>

#include <vector>

#include "gpu/cuda_test.h"
#include "layers/ops.h"
#include "parallel/communicator.h"
#include "parallel/staged_communicator.h"

namespace tr {
namespace {

using gpu_test::device_tensor;
using gpu_test::random_floats;
using gpu_test::to_host_vector;

class GpuStagedCommunicator : public ::testing::Test {
 protected:
  void SetUp() override {
    TR_REQUIRE_CUDA();
    host_ = make_single_process_communicator("tp");
    comm_ = make_staged_communicator(*host_, device_staging_memory());
  }
  std::unique_ptr<Communicator> host_, comm_;
};

TEST_F(GpuStagedCommunicator, TellsDeviceFromHostMemory) {
  const StagingMemory memory = device_staging_memory();
  Tensor on_device = device_tensor(random_floats(16, 1), {16});
  std::vector<float> on_host(16);
  EXPECT_TRUE(memory.is_device(on_device.raw()));
  EXPECT_FALSE(memory.is_device(on_host.data()));
  EXPECT_EQ(comm_->name(), "tp");
  EXPECT_EQ(comm_->size(), 1);
}

// A kernel writes the buffer (x + x), the collective follows on the host: it must see the
// kernel's result, and the result must be back on the device.
TEST_F(GpuStagedCommunicator, CollectivesFollowTheComputeStream) {
  const std::vector<float> values = random_floats(1 << 20, 2);
  std::vector<float> doubled(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) doubled[i] = values[i] + values[i];
  const Tensor x = device_tensor(values, {1 << 20});
  Tensor t;
  ops::add(t, x, x);
  comm_->all_reduce(t, ReduceOp::sum);
  EXPECT_EQ(to_host_vector<float>(t), doubled);

  Tensor u;
  ops::add(u, x, x);
  auto request = comm_->all_reduce_async(u.raw(), u.numel(), DType::f32, ReduceOp::sum);
  request->wait();
  EXPECT_EQ(to_host_vector<float>(u), doubled);
}

TEST_F(GpuStagedCommunicator, Bf16AndMovesOnTheDevice) {
  const std::vector<float> values = random_floats(1000, 3);
  Tensor f = device_tensor(values, {1000});
  Tensor b = Tensor::empty({1000}, DType::bf16, Device::cuda);
  b.copy_from(f);  // rounded once
  const std::vector<float> rounded = gpu_test::values(b);
  comm_->all_reduce(b.raw(), b.numel(), DType::bf16, ReduceOp::sum);  // fp32 sum of one
  EXPECT_EQ(gpu_test::values(b), rounded);

  Tensor gathered = Tensor::zeros({1000}, DType::bf16, Device::cuda);
  comm_->all_gather(b.raw(), gathered.raw(), 1000, DType::bf16);
  EXPECT_EQ(gpu_test::values(gathered), rounded);
  Tensor scattered = Tensor::zeros({1000}, DType::f32, Device::cuda);
  comm_->reduce_scatter(f.raw(), scattered.raw(), 1000, DType::f32, ReduceOp::sum);
  EXPECT_EQ(to_host_vector<float>(scattered), values);
  comm_->broadcast(f.raw(), 1000, DType::f32, 0);
  EXPECT_EQ(to_host_vector<float>(f), values);
}

}  // namespace
}  // namespace tr
