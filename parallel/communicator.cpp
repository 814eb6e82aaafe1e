#include "parallel/communicator.h"

#include <cstring>

#include "layers/device_ops.h"

namespace tr {

double Communicator::all_reduce_scalar(double value, ReduceOp op) {
  all_reduce(&value, 1, DType::f64, op);
  return value;
}

std::int64_t Communicator::all_reduce_scalar(std::int64_t value, ReduceOp op) {
  all_reduce(&value, 1, DType::i64, op);
  return value;
}

namespace {

class DoneRequest final : public CommRequest {
 public:
  void wait() override {}
  bool test() override { return true; }
};

class SingleProcessCommunicator final : public Communicator {
 public:
  explicit SingleProcessCommunicator(std::string name) : name_(std::move(name)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return name_; }
  void all_reduce(void*, std::int64_t, DType, ReduceOp) override {}
  std::unique_ptr<CommRequest> all_reduce_async(void*, std::int64_t, DType, ReduceOp) override {
    return std::make_unique<DoneRequest>();
  }
  void reduce_scatter(const void* send, void* recv, std::int64_t count, DType dtype,
                      ReduceOp) override {
    copy_any_memory(recv, send, static_cast<std::size_t>(count) * dtype_size(dtype));
  }
  void all_gather(const void* send, void* recv, std::int64_t count, DType dtype) override {
    copy_any_memory(recv, send, static_cast<std::size_t>(count) * dtype_size(dtype));
  }
  void broadcast(void*, std::int64_t, DType, int) override {}
  void barrier() override {}

 private:
  std::string name_;
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator(const std::string& name) {
  return std::make_unique<SingleProcessCommunicator>(name);
}

}  // namespace tr
