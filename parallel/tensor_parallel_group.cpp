#include "parallel/tensor_parallel_group.h"

namespace tr {

namespace {

class CommunicatorGroup final : public TensorParallel {
 public:
  explicit CommunicatorGroup(Communicator& comm) : comm_(comm) {}
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }
  void all_reduce_sum(Tensor& t) override { comm_.all_reduce(t, ReduceOp::sum); }
  void all_reduce_max(Tensor& t) override { comm_.all_reduce(t, ReduceOp::max); }
  void all_gather(Tensor& out, const Tensor& local) override {
    Shape shape = local.shape();
    shape.insert(shape.begin(), comm_.size());
    ensure_shape(out, shape, local.dtype(), local.device());
    comm_.all_gather(local.raw(), out.raw(), local.numel(), local.dtype());
  }

 private:
  Communicator& comm_;
};

}  // namespace

std::unique_ptr<TensorParallel> make_tensor_parallel(Communicator& comm) {
  return std::make_unique<CommunicatorGroup>(comm);
}

}  // namespace tr
