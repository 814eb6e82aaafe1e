#include "parallel/nccl_communicator.h"

#include "layers/device.h"

#ifdef TR_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include <string>
#endif

namespace tr {

int gpu_for_local_rank(int local_rank) {
  const int count = cuda_device_count();
  return count > 0 ? local_rank % count : 0;
}

#ifndef TR_HAVE_NCCL

bool nccl_built() {
  return false;
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, int) {
  throw UserError("parallel.gpu_comm: nccl: " + std::to_string(host.size()) +
                  " ranks in a group on CUDA need NCCL, and this trainer was built without it "
                  "(parallel.gpu_comm: mpi or auto stages the tensors through MPI instead)");
}

#else

bool nccl_built() {
  return true;
}

namespace {

#define TR_NCCL_CHECK(call)                                                         \
  do {                                                                              \
    const ncclResult_t tr_res_ = (call);                                            \
    if (tr_res_ != ncclSuccess)                                                     \
      throw InternalError(std::string(#call) + ": " + ncclGetErrorString(tr_res_)); \
  } while (0)
#define TR_CUDART_CHECK(call)                                                       \
  do {                                                                              \
    const cudaError_t tr_err_ = (call);                                             \
    if (tr_err_ != cudaSuccess)                                                     \
      throw InternalError(std::string(#call) + ": " + cudaGetErrorString(tr_err_)); \
  } while (0)

// The compute stream of layers/cuda (the legacy default stream for now).
constexpr cudaStream_t kComputeStream = 0;

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
  }
  throw InternalError("NCCL: unknown dtype");
}

ncclRedOp_t nccl_op(ReduceOp op) {
  return op == ReduceOp::max ? ncclMax : ncclSum;
}

bool is_device(const void* ptr) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, ptr) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

// Completion of a collective on the side stream, as an event.
class NcclRequest final : public CommRequest {
 public:
  explicit NcclRequest(cudaEvent_t done) : done_(done) {}
  ~NcclRequest() override { cudaEventDestroy(done_); }
  // Device consumers are ordered after the collective; the host does not block.
  void wait() override { TR_CUDART_CHECK(cudaStreamWaitEvent(kComputeStream, done_, 0)); }
  bool test() override { return cudaEventQuery(done_) == cudaSuccess; }

 private:
  cudaEvent_t done_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Communicator& host, int device)
      : rank_(host.rank()), size_(host.size()), name_(host.name()) {
    TR_CUDART_CHECK(cudaSetDevice(device));
    ncclUniqueId id{};
    if (rank_ == 0) TR_NCCL_CHECK(ncclGetUniqueId(&id));
    host.broadcast(&id, sizeof id, DType::u8, 0);
    const ncclResult_t init = ncclCommInitRank(&comm_, size_, id, rank_);
    // Invalid usage at set-up: most often two ranks of the group on one GPU (more ranks on a
    // node than GPUs it gives them), which NCCL refuses. Say so in terms of the job.
    if (init == ncclInvalidUsage)
      throw UserError("train.device: cuda: NCCL refused the " + name_ + " group of " +
                      std::to_string(size_) + " ranks (" + ncclGetErrorString(init) +
                      "; two ranks on one GPU?): start at most as many ranks per node as it has "
                      "GPUs (mpirun --map-by ppr:GPUS:node, srun --gpus-per-task=1), or set "
                      "parallel.gpu_comm: mpi");
    TR_NCCL_CHECK(init);
    TR_CUDART_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
  }
  ~NcclCommunicator() override {
    cudaStreamSynchronize(side_);
    cudaStreamDestroy(side_);
    ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return name_; }

  void all_reduce(void* data, std::int64_t count, DType dtype, ReduceOp op) override {
    staged(data, count, dtype, [&](void* d) {
      TR_NCCL_CHECK(ncclAllReduce(d, d, static_cast<size_t>(count), nccl_type(dtype), nccl_op(op),
                                  comm_, kComputeStream));
    });
  }

  std::unique_ptr<CommRequest> all_reduce_async(void* data, std::int64_t count, DType dtype,
                                                ReduceOp op) override {
    if (!is_device(data)) {  // host data: nothing to overlap with
      all_reduce(data, count, dtype, op);
      return std::make_unique<NcclRequest>(record(kComputeStream));
    }
    // The side stream starts after what the compute stream has enqueued (the bucket's copies).
    cudaEvent_t ready = record(kComputeStream);
    TR_CUDART_CHECK(cudaStreamWaitEvent(side_, ready, 0));
    cudaEventDestroy(ready);
    TR_NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(count), nccl_type(dtype),
                                nccl_op(op), comm_, side_));
    return std::make_unique<NcclRequest>(record(side_));
  }

  void reduce_scatter(const void* send, void* recv, std::int64_t count, DType dtype,
                      ReduceOp op) override {
    require_device(send, "reduce_scatter");
    require_device(recv, "reduce_scatter");
    TR_NCCL_CHECK(ncclReduceScatter(send, recv, static_cast<size_t>(count), nccl_type(dtype),
                                    nccl_op(op), comm_, kComputeStream));
  }

  void all_gather(const void* send, void* recv, std::int64_t count, DType dtype) override {
    require_device(send, "all_gather");
    require_device(recv, "all_gather");
    TR_NCCL_CHECK(ncclAllGather(send, recv, static_cast<size_t>(count), nccl_type(dtype), comm_,
                                kComputeStream));
  }

  void broadcast(void* data, std::int64_t count, DType dtype, int root) override {
    staged(data, count, dtype, [&](void* d) {
      TR_NCCL_CHECK(ncclBroadcast(d, d, static_cast<size_t>(count), nccl_type(dtype), root, comm_,
                                  kComputeStream));
    });
  }

  void barrier() override {
    std::int32_t one = 1;
    all_reduce(&one, 1, DType::i32, ReduceOp::sum);  // host data: synchronises
  }

 private:
  cudaEvent_t record(cudaStream_t stream) {
    cudaEvent_t e;
    TR_CUDART_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    TR_CUDART_CHECK(cudaEventRecord(e, stream));
    return e;
  }

  void require_device(const void* p, const char* what) {
    if (!is_device(p))
      throw InternalError("NCCL " + std::string(what) + " on host memory (" + name_ + " group)");
  }

  // Runs `op` on device memory: `data` itself, or a device copy of host data, copied back
  // after (synchronising: host scalars are read right after).
  template <typename Op>
  void staged(void* data, std::int64_t count, DType dtype, Op&& op) {
    if (is_device(data)) return op(data);
    const std::size_t bytes = static_cast<std::size_t>(count) * dtype_size(dtype);
    void* d = nullptr;
    TR_CUDART_CHECK(cudaMalloc(&d, bytes > 0 ? bytes : 1));
    try {
      TR_CUDART_CHECK(cudaMemcpy(d, data, bytes, cudaMemcpyHostToDevice));
      op(d);
      TR_CUDART_CHECK(cudaMemcpy(data, d, bytes, cudaMemcpyDeviceToHost));
    } catch (...) {
      cudaFree(d);
      throw;
    }
    cudaFree(d);
  }

  int rank_, size_;
  std::string name_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t side_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host, int device) {
  return std::make_unique<NcclCommunicator>(host, device);
}

#endif

}  // namespace tr
