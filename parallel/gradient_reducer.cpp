#include "parallel/gradient_reducer.h"

#include <cstring>

#include "layers/device_ops.h"

namespace tr {

GradientReducer::GradientReducer(const ParameterList& params, Communicator& dp, double bucket_mb,
                                 bool overlap)
    : dp_(dp), overlap_(overlap) {
  const auto limit = static_cast<std::size_t>(bucket_mb * 1024 * 1024);
  std::size_t bytes = 0;
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    Parameter* p = *it;
    // A new bucket when the current one is full or holds another dtype.
    if (buckets_.empty() || bytes >= limit ||
        buckets_.back().params.front()->grad.dtype() != p->grad.dtype()) {
      buckets_.emplace_back();
      bytes = 0;
    }
    buckets_.back().params.push_back(p);
    bucket_of_[p] = buckets_.size() - 1;
    bytes += p->grad.bytes();
  }
  for (Bucket& b : buckets_) {
    std::int64_t n = 0;
    for (Parameter* p : b.params) n += p->grad.numel();
    // With the gradients: on CUDA the copies stay on the device and `dp` is NCCL.
    b.flat = Tensor::empty({n}, b.params.front()->grad.dtype(), b.params.front()->grad.device());
  }
}

void GradientReducer::begin_step() {
  for (Bucket& b : buckets_) {
    b.pending = b.params.size();
    b.request.reset();
  }
  started_early_ = 0;
  finishing_ = false;
}

void GradientReducer::start(Bucket& b) {
  auto* out = static_cast<char*>(b.flat.raw());
  for (Parameter* p : b.params) {
    flat::copy(b.flat.device(), out, p->grad.raw(), p->grad.bytes());
    out += p->grad.bytes();
  }
  if (!finishing_) ++started_early_;
  b.request = dp_.all_reduce_async(b.flat.raw(), b.flat.numel(), b.flat.dtype(), ReduceOp::sum);
}

void GradientReducer::mark_ready(const Parameter* p) {
  auto it = bucket_of_.find(p);
  TR_CHECK(it != bucket_of_.end(), "gradient reducer: unknown parameter " + p->name);
  Bucket& b = buckets_[it->second];
  TR_CHECK(b.pending > 0, "gradient reducer: " + p->name + " marked ready twice");
  if (--b.pending == 0 && overlap_) start(b);
}

void GradientReducer::finish() {
  finishing_ = true;
  // Start in bucket order: every rank must issue the collectives in the same order.
  for (Bucket& b : buckets_)
    if (!b.request) start(b);
  for (Bucket& b : buckets_) {
    b.request->wait();
    const auto* in = static_cast<const char*>(b.flat.raw());
    for (Parameter* p : b.params) {
      flat::copy(b.flat.device(), p->grad.raw(), in, p->grad.bytes());
      in += p->grad.bytes();
    }
  }
}

}  // namespace tr
