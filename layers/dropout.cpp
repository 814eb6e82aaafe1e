#include "layers/dropout.h"

#include "layers/ops.h"

namespace tr {

std::uint64_t dropout_stream(std::uint64_t step, std::uint64_t layer_id) {
  // Layer ids stay far below 2^20; steps below 2^44.
  return (step << 20) ^ layer_id;
}

void make_dropout_mask(Tensor& keep, const Shape& shape, double p, const ForwardContext& ctx,
                       std::uint64_t layer_id) {
  const std::int64_t per_sample = shape_numel(shape) / shape[0];
  ops::dropout_mask(keep, shape, p, ctx.seed, dropout_stream(ctx.step, layer_id),
                    static_cast<std::uint64_t>(ctx.sample_offset * per_sample));
}

void make_dropout_mask_slice(Tensor& keep, const Shape& shape, double p, const ForwardContext& ctx,
                             std::uint64_t layer_id, std::int64_t full_per_sample,
                             std::int64_t first) {
  const auto stride = static_cast<std::uint64_t>(full_per_sample);
  ops::dropout_mask_rows(
      keep, shape, p, ctx.seed, dropout_stream(ctx.step, layer_id),
      static_cast<std::uint64_t>(ctx.sample_offset) * stride + static_cast<std::uint64_t>(first),
      stride);
}

Tensor Dropout::forward(const Tensor& x, const ForwardContext& ctx) {
  active_ = ctx.training && p_ > 0;
  if (!active_) return x;
  make_dropout_mask(keep_, x.shape(), p_, ctx, layer_id_);
  ops::dropout_apply(y_, x, keep_, p_);
  return y_;
}

void Dropout::forward_add(Tensor& out, const Tensor& skip, const Tensor& x,
                          const ForwardContext& ctx) {
  active_ = ctx.training && p_ > 0;
  if (!active_) {
    ops::add(out, skip, x);
    return;
  }
  make_dropout_mask(keep_, x.shape(), p_, ctx, layer_id_);
  ops::dropout_add(out, skip, x, keep_, p_);
}

Tensor Dropout::backward(const Tensor& dy) {
  if (!active_) return dy;
  ops::dropout_apply(dx_, dy, keep_, p_);
  return dx_;
}

}  // namespace tr
