#include "parallel/tensor_parallel_group.h"

namespace tr {

namespace {

class CommunicatorGroup final : public TensorParallel {
 public:
  explicit CommunicatorGroup(Communicator& comm) : comm_(comm) {}
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }
  void all_reduce_sum(Tensor& t) override {
    if (t.dtype() != DType::bf16) return comm_.all_reduce(t, ReduceOp::sum);
    // A bf16 activation's gradient (layers/precision.h): summed in fp32, rounded once.
    ensure_shape(wide_, t.shape(), DType::f32, t.device());
    wide_.copy_from(t);
    comm_.all_reduce(wide_, ReduceOp::sum);
    t.copy_from(wide_);
  }
  void all_reduce_max(Tensor& t) override { comm_.all_reduce(t, ReduceOp::max); }
  void all_gather(Tensor& out, const Tensor& local) override {
    Shape shape = local.shape();
    shape.insert(shape.begin(), comm_.size());
    ensure_shape(out, shape, local.dtype(), local.device());
    comm_.all_gather(local.raw(), out.raw(), local.numel(), local.dtype());
  }

 private:
  Communicator& comm_;
  Tensor wide_;
};

}  // namespace

std::unique_ptr<TensorParallel> make_tensor_parallel(Communicator& comm) {
  return std::make_unique<CommunicatorGroup>(comm);
}

}  // namespace tr
