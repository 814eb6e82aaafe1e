#include "trainer/sharded_adamw.h"

#include <cmath>
#include <cstring>

#include "layers/cpu/kernels.h"
#include "layers/device.h"
#include "layers/device_ops.h"

namespace tr {

ShardedAdamW::ShardedAdamW(ParameterList params, const AdamWConfig& config, Communicator& dp,
                           Communicator* tp)
    : params_(std::move(params)),
      config_(config),
      dp_(dp),
      tp_(tp && tp->size() > 1 ? tp : nullptr) {
  validate_adamw_config(config_);
  for (Parameter* p : params_) {
    TR_CHECK(p->value.dtype() == DType::f32, "ZeRO-1 shards fp32 parameters");
    total_ += p->value.numel();
  }
  const std::int64_t ranks = dp_.size();
  shard_ = (total_ + ranks - 1) / ranks;
  const std::int64_t begin = shard_ * dp_.rank(), end = begin + shard_;
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter* p = params_[i];
    const std::int64_t n = p->value.numel();
    const std::int64_t lo = std::max(begin, offset), hi = std::min(end, offset + n);
    if (lo < hi)
      segments_.push_back({i, lo - begin, lo - offset, hi - lo,
                           p->decay ? config_.weight_decay : 0.0,
                           !tp_ || p->sharded() || tp_->rank() == 0});
    offset += n;
  }
  device_ = params_.empty() ? Device::cpu : params_.front()->value.device();
  for (Parameter* p : params_)
    TR_CHECK(p->value.device() == device_, "ZeRO-1: parameters on different devices");
  flat_ = Tensor::zeros({shard_ * ranks}, DType::f32);
  grad_shard_ = Tensor::zeros({shard_}, DType::f32);
  param_shard_ = Tensor::zeros({shard_}, DType::f32);
  m_ = Tensor::zeros({shard_}, DType::f32);
  v_ = Tensor::zeros({shard_}, DType::f32);
}

void ShardedAdamW::zero_grad() {
  for (Parameter* p : params_) p->grad.zero_();
}

void ShardedAdamW::to_device(Device device) {
  device_ = device;
  for (Tensor* t : {&flat_, &grad_shard_, &param_shard_, &m_, &v_}) *t = tr::to_device(*t, device);
}

// The flat buffers live with the parameters; on CUDA `dp_` (and `tp_`) are device
// communicators (NCCL) and the copies below are ordered on the compute stream.
ShardedAdamW::StepResult ShardedAdamW::step(double lr, double max_norm) {
  float* flat = flat_.data<float>();
  std::int64_t offset = 0;
  for (Parameter* p : params_) {
    flat::copy(device_, flat + offset, p->grad.raw(), p->grad.bytes());
    offset += p->grad.numel();
  }
  flat::zero(device_, flat + offset,
             sizeof(float) * static_cast<std::size_t>(flat_.numel() - offset));
  dp_.reduce_scatter(flat, grad_shard_.data<float>(), shard_, DType::f32, ReduceOp::sum);

  StepResult result;
  double squares = 0;
  if (!tp_) {
    squares = flat::sum_squares(device_, grad_shard_.data<float>(), shard_);
  } else {
    for (const Segment& s : segments_)
      if (s.in_norm)
        squares += flat::sum_squares(device_, grad_shard_.data<float>() + s.shard_begin, s.count);
  }
  squares = dp_.all_reduce_scalar(squares);
  if (tp_) squares = tp_->all_reduce_scalar(squares);
  result.grad_norm = std::sqrt(squares);
  if (!std::isfinite(result.grad_norm)) return result;
  // As torch.nn.utils.clip_grad_norm_: scale only when the coefficient is below 1.
  if (max_norm > 0) {
    const double coefficient = max_norm / (result.grad_norm + 1e-6);
    if (coefficient < 1)
      flat::scale(device_, grad_shard_.data<float>(), static_cast<float>(coefficient), shard_);
  }

  ++steps_;
  float* shard = param_shard_.data<float>();
  for (const Segment& s : segments_)  // this rank's slice of the current parameters
    flat::copy(device_, shard + s.shard_begin,
               params_[s.param]->value.data<float>() + s.param_begin,
               sizeof(float) * static_cast<std::size_t>(s.count));
  for (const Segment& s : segments_)
    flat::adamw_update(device_, shard + s.shard_begin, grad_shard_.data<float>() + s.shard_begin,
                       m_.data<float>() + s.shard_begin, v_.data<float>() + s.shard_begin, s.count,
                       static_cast<float>(lr), static_cast<float>(config_.beta1),
                       static_cast<float>(config_.beta2), static_cast<float>(config_.eps),
                       static_cast<float>(s.weight_decay), steps_);

  dp_.all_gather(shard, flat, shard_, DType::f32);
  offset = 0;
  for (Parameter* p : params_) {
    flat::copy(device_, p->value.raw(), flat + offset, p->value.bytes());
    offset += p->value.numel();
  }
  result.updated = true;
  return result;
}

}  // namespace tr
