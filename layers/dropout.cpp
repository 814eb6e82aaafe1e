#include "layers/dropout.h"

#include "layers/ops.h"

namespace tr {

std::optional<Recompute> recompute_from_name(std::string_view name) {
  if (name == "none") return Recompute::none;
  if (name == "selective") return Recompute::selective;
  if (name == "full") return Recompute::full;
  return std::nullopt;
}

std::uint64_t dropout_stream(std::uint64_t step, std::uint64_t layer_id) {
  // Layer ids stay far below 2^20; steps below 2^44.
  return (step << 20) ^ layer_id;
}

namespace {

// SplitMix64's finaliser: every input bit moves about half the output bits.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

std::uint64_t attention_dropout_seed(const ForwardContext& ctx, std::uint64_t layer_id,
                                     std::int64_t first_head) {
  std::uint64_t h = mix(ctx.seed);
  for (const std::uint64_t part :
       {dropout_stream(ctx.step, layer_id), static_cast<std::uint64_t>(ctx.sample_offset),
        static_cast<std::uint64_t>(first_head)})
    h = mix(h ^ part);
  return h;
}

namespace {

void keyed_mask(Tensor& keep, const Shape& shape, double p, const ForwardContext& ctx,
                std::uint64_t layer_id, std::int64_t heads, std::int64_t first_head,
                Device device) {
  TR_CHECK(shape.size() >= 2, "dropout mask of a tensor without a sample dimension");
  const std::int64_t B = shape.front(), K = shape.back();
  const std::int64_t R = B > 0 && K > 0 ? shape_numel(shape) / (B * heads * K) : 0;
  TR_CHECK(first_head + heads <= (std::int64_t{1} << (kDropoutSampleShift - kDropoutHeadShift)) &&
               R < (std::int64_t{1} << kDropoutRowShift) &&
               K < (std::int64_t{1} << kDropoutRowShift),
           "dropout mask " + shape_string(shape) + " exceeds the counter layout");
  const std::uint64_t offset =
      (static_cast<std::uint64_t>(ctx.sample_offset) << kDropoutSampleShift) +
      (static_cast<std::uint64_t>(first_head) << kDropoutHeadShift);
  ops::dropout_mask(keep, {B, heads, R, K}, p, ctx.seed, dropout_stream(ctx.step, layer_id), offset,
                    {std::uint64_t{1} << kDropoutSampleShift, std::uint64_t{1} << kDropoutHeadShift,
                     std::uint64_t{1} << kDropoutRowShift},
                    device);
  keep = keep.view(shape);
}

}  // namespace

void make_dropout_mask(Tensor& keep, const Shape& shape, double p, const ForwardContext& ctx,
                       std::uint64_t layer_id, Device device) {
  keyed_mask(keep, shape, p, ctx, layer_id, 1, 0, device);
}

void make_attention_dropout_mask(Tensor& keep, const Shape& shape, double p,
                                 const ForwardContext& ctx, std::uint64_t layer_id,
                                 std::int64_t first_head, Device device) {
  TR_CHECK(shape.size() == 4, "attention dropout mask: [B, H, Tq, Tk]");
  keyed_mask(keep, shape, p, ctx, layer_id, shape[1], first_head, device);
}

Tensor Dropout::forward(const Tensor& x, const ForwardContext& ctx) {
  active_ = ctx.training && p_ > 0;
  if (!active_) return x;
  make_dropout_mask(keep_, x.shape(), p_, ctx, layer_id_, x.device());
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
  make_dropout_mask(keep_, x.shape(), p_, ctx, layer_id_, x.device());
  ops::dropout_add(out, skip, x, keep_, p_);
}

Tensor Dropout::backward(const Tensor& dy) {
  if (!active_) return dy;
  ops::dropout_apply(dx_, dy, keep_, p_);
  return dx_;
}

}  // namespace tr
