// Collective communication between the ranks of a group (DESIGN section 2: parallel/).
//
// One interface, several transports: MPI for host memory (CPU training and tests), NCCL for
// device memory (the GPU backend), and a world of one (a single process without mpirun, where
// every collective is the identity). Buffers are raw pointers with an element count and a
// dtype, so the same calls serve tensors, bucket buffers and scalars.
//
// Non-blocking variants return a handle; the operation is complete (and its buffers may be
// touched again) once wait() returned. All ranks of a group must issue the same collectives in
// the same order.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "layers/tensor.h"

namespace tr {

enum class ReduceOp { sum, max };

class CommRequest {
 public:
  virtual ~CommRequest() = default;
  virtual void wait() = 0;
  virtual bool test() = 0;  // true once complete (then wait() returns at once)
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "tp", "dp", "world": for messages

  // In place: data[count] of every rank reduced, result on every rank.
  virtual void all_reduce(void* data, std::int64_t count, DType dtype, ReduceOp op) = 0;
  virtual std::unique_ptr<CommRequest> all_reduce_async(void* data, std::int64_t count, DType dtype,
                                                        ReduceOp op) = 0;
  // send[size * count] reduced over ranks; rank r receives block r: recv[count].
  virtual void reduce_scatter(const void* send, void* recv, std::int64_t count, DType dtype,
                              ReduceOp op) = 0;
  // send[count] of rank r lands at recv[r * count .. (r + 1) * count) on every rank.
  virtual void all_gather(const void* send, void* recv, std::int64_t count, DType dtype) = 0;
  virtual void broadcast(void* data, std::int64_t count, DType dtype, int root) = 0;
  virtual void barrier() = 0;

  // Conveniences for the common cases.
  double all_reduce_scalar(double value, ReduceOp op = ReduceOp::sum);
  std::int64_t all_reduce_scalar(std::int64_t value, ReduceOp op = ReduceOp::sum);
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum) {
    all_reduce(t.raw(), t.numel(), t.dtype(), op);
  }
};

// A group of one process: every collective leaves the data as it is (copies for
// reduce_scatter/all_gather).
std::unique_ptr<Communicator> make_single_process_communicator(const std::string& name);

}  // namespace tr
