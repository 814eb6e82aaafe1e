#include "layers/cross_entropy.h"

#include <cmath>

#include "layers/device.h"
#include "layers/ops.h"

namespace tr {

double CrossEntropy::forward(const Tensor& logits, const Tensor& targets,
                             const Tensor& host_targets_given) {
  logits_ = logits;
  targets_ = targets;
  // Counted on the host: the caller's host copy, or a device's targets copied (a few kilobytes
  // per micro-batch, and a wait for the device).
  TR_CHECK(!host_targets_given.defined() || (host_targets_given.device() == Device::cpu &&
                                             host_targets_given.numel() == targets.numel()),
           "cross entropy: the host targets do not match the targets");
  const Tensor host_targets =
      host_targets_given.defined() ? host_targets_given : to_device(targets, Device::cpu);
  const std::int32_t* t = host_targets.data<std::int32_t>();
  counted_ = 0;
  for (std::int64_t i = 0; i < targets.numel(); ++i) counted_ += (t[i] != ignore_index_);
  if (active_tp(shard_.tp)) return forward_sharded(logits, targets, host_targets);
  return ops::cross_entropy_forward(logsumexp_, logits, targets, smoothing_, ignore_index_);
}

double CrossEntropy::forward_sharded(const Tensor& logits, const Tensor& targets,
                                     const Tensor& t_host) {
  TensorParallel& tp = *shard_.tp;
  const std::int64_t N = targets.numel();
  ops::ce_shard_max(row_max_, logits, shard_.valid);
  tp.all_reduce_max(row_max_);
  ops::ce_shard_sums(sums_, logits, targets, row_max_, shard_.valid, shard_.first, ignore_index_);
  tp.all_reduce_sum(sums_);
  // The per-row finish is host code: on CUDA the row statistics come to the host and the
  // log-sum-exp goes back (a few kilobytes per micro-batch).
  const bool on_host = logits.device() == Device::cpu;
  Tensor& lse_host = on_host ? logsumexp_ : lse_host_;
  ensure_shape(lse_host, {N}, DType::f64);
  const Tensor mx_host = to_device(row_max_, Device::cpu), s_host = to_device(sums_, Device::cpu);
  const double* mx = mx_host.data<double>();
  const double* s = s_host.data<double>();
  double* lse = lse_host.data<double>();
  const std::int32_t* t = t_host.data<std::int32_t>();
  const double e = smoothing_, V = static_cast<double>(shard_.vocab);
  double total = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    if (t[n] == ignore_index_) {
      lse[n] = 0;
      continue;
    }
    lse[n] = mx[n] + std::log(s[n]);
    // As the single-process kernel: (1 - eps) * (-log p_t) + eps * (lse - mean of the logits).
    const double loss = (1.0 - e) * (lse[n] - s[N + n]) + e * (lse[n] - s[2 * N + n] / V);
    // Rounded to the logits' type per row as the single-process kernel stores it.
    total += logits.dtype() == DType::f32 ? static_cast<double>(static_cast<float>(loss)) : loss;
  }
  if (!on_host) {
    ensure_shape(logsumexp_, {N}, DType::f64, logits.device());
    logsumexp_.copy_from(lse_host);
  }
  return total;
}

Tensor CrossEntropy::backward(double scale, bool overwrite_logits) {
  // Each element's gradient needs only its own logit and its row's log-sum-exp, so it can take
  // the logit's place: the step then never holds both (a translation model's largest tensors,
  // counted tokens x vocabulary).
  if (overwrite_logits)
    dlogits_ = logits_;
  else if (dlogits_.same_buffer(logits_))
    dlogits_ = Tensor();  // an earlier call's in-place gradient: not this time
  if (active_tp(shard_.tp)) {
    ops::ce_shard_backward(dlogits_, logits_, logsumexp_, targets_, shard_.valid, shard_.first,
                           shard_.vocab, smoothing_, ignore_index_, scale);
    return dlogits_;
  }
  ops::cross_entropy_backward(dlogits_, logits_, logsumexp_, targets_, smoothing_, ignore_index_,
                              scale);
  return dlogits_;
}

}  // namespace tr
