// The materialised attention's CUDA kernels (layers/cuda/attention_kernels.cuh), compiled for
// the host and run under tests/common/cuda_emulation.h with the launches' geometry:
// - the head gathers and scatters (swap_middle: float4 and scalar moves, 32- and 64-bit index
//   arithmetic; swap_middle_as: to and from bf16) against a plain permutation, exactly;
// - the row kernels (softmax with padding and causal masks and dropout, the softmax gradient,
//   the dropped-probability kernels) inside attention.cu's forward and backward sequences,
//   with the cuBLASLt products replaced by CPU products, against the CPU attention kernels
//   (fp32: 1e-5 relative) and against the CPU ops on bf16 tensors under bf16 products (the
//   bf16 operand path: 1e-2).
// Shapes: score rows not a multiple of the 8 rows of a block, key counts above and below a
// warp's 32 lanes, head widths that do and do not allow float4 moves, an empty key sequence,
// causal rows without a visible key, dropout. Outputs (and the kernels' intermediate
// buffers) start as NaN.
#include "common/cuda_emulation.h"
// (the emulation first: the kernel headers compile against it)
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <random>
#include <vector>

#include "common/attention_case.h"
#include "common/emulated_kernels.h"
#include "layers/cpu/kernels.h"
#include "layers/cuda/attention_kernels.cuh"
#include "layers/ops.h"

namespace tr {
namespace {

using namespace emu_test;
namespace at = cuda::attn;
using cuda::bf16;
using U32 = std::uint32_t;

constexpr double kTol = 1e-5;

// ---- the launches of attention.cu, on the emulation -------------------------------------------

template <typename V, typename I>
void launch_swap_middle(V* out, const V* in, i64 B, i64 X, i64 Y, i64 D) {
  emu::launch(cuda::grid_for(B * X * Y * D), cuda::kThreads, 0, at::swap_middle_kernel<V, I>, out,
              in, static_cast<I>(B), static_cast<I>(X), static_cast<I>(Y), static_cast<I>(D));
}

void swap_middle(float* out, const float* in, i64 B, i64 X, i64 Y, i64 D) {
  const i64 n = B * X * Y * D;
  if (n <= 0) return;
  const auto [by_four, small] = at::swap_middle_path(out, in, n, D);
  if (by_four && small)
    launch_swap_middle<float4, U32>(reinterpret_cast<float4*>(out),
                                    reinterpret_cast<const float4*>(in), B, X, Y, D / 4);
  else if (by_four)
    launch_swap_middle<float4, i64>(reinterpret_cast<float4*>(out),
                                    reinterpret_cast<const float4*>(in), B, X, Y, D / 4);
  else if (small)
    launch_swap_middle<float, U32>(out, in, B, X, Y, D);
  else
    launch_swap_middle<float, i64>(out, in, B, X, Y, D);
}

template <typename In, typename Out>
void swap_middle_as(Out* out, const In* in, i64 B, i64 X, i64 Y, i64 D) {
  const i64 n = B * X * Y * D;
  if (n <= 0) return;
  emu::launch(cuda::grid_for(n), cuda::kThreads, 0, at::swap_middle_as_kernel<In, Out>, out, in,
              static_cast<U32>(B), static_cast<U32>(X), static_cast<U32>(Y), static_cast<U32>(D));
}

__nv_bfloat16* nv(Bits& v) {
  return reinterpret_cast<__nv_bfloat16*>(v.data());
}

// gemm_strided_batched, on the CPU.
void batched(bool ta, bool tb, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda, i64 sa,
             const float* B, i64 ldb, i64 sb, float* C, i64 ldc, i64 sc, i64 batch) {
  for (i64 i = 0; i < batch; ++i)
    cpu::gemm<float>(ta, tb, M, N, K, alpha, A + i * sa, lda, B + i * sb, ldb, 0.0f, C + i * sc,
                     ldc);
}

// ---- gathers and scatters -------------------------------------------------------------------

// out[b, y, x, :] = in[b, x, y, :]
template <typename T>
std::vector<T> permuted(const std::vector<T>& in, i64 B, i64 X, i64 Y, i64 D) {
  std::vector<T> out(in.size());
  for (i64 b = 0; b < B; ++b)
    for (i64 x = 0; x < X; ++x)
      for (i64 y = 0; y < Y; ++y)
        for (i64 d = 0; d < D; ++d)
          out[((b * Y + y) * X + x) * D + d] = in[((b * X + x) * Y + y) * D + d];
  return out;
}

TEST(EmulatedAttentionKernels, SwapMiddleEveryPath) {
  struct Dims {
    i64 B, X, Y, D;
  };
  // D % 4 == 0 (float4 moves) and not; more elements than one block of a grid-stride loop.
  for (const Dims s : {Dims{2, 5, 3, 8}, Dims{2, 7, 3, 6}, Dims{1, 33, 4, 20}, Dims{3, 2, 5, 1}}) {
    const i64 n = s.B * s.X * s.Y * s.D;
    const F in = random_floats(n, 1);
    const F want = permuted(in, s.B, s.X, s.Y, s.D);
    // The path swap_middle takes here, then each of the four kernels wherever it applies.
    F out = poison(n);
    swap_middle(out.data(), in.data(), s.B, s.X, s.Y, s.D);
    EXPECT_EQ(max_rel_error(out, want), 0.0) << "swap_middle, D " << s.D;
    EXPECT_EQ(at::swap_middle_path(out.data(), in.data(), n, s.D).by_four, s.D % 4 == 0);
    for (int path = 0; path < 4; ++path) {
      const bool by_four = path & 1, wide = path & 2;
      if (by_four && s.D % 4 != 0) continue;
      F k = poison(n);
      if (by_four && wide)
        launch_swap_middle<float4, i64>(reinterpret_cast<float4*>(k.data()),
                                        reinterpret_cast<const float4*>(in.data()), s.B, s.X, s.Y,
                                        s.D / 4);
      else if (by_four)
        launch_swap_middle<float4, U32>(reinterpret_cast<float4*>(k.data()),
                                        reinterpret_cast<const float4*>(in.data()), s.B, s.X, s.Y,
                                        s.D / 4);
      else if (wide)
        launch_swap_middle<float, i64>(k.data(), in.data(), s.B, s.X, s.Y, s.D);
      else
        launch_swap_middle<float, U32>(k.data(), in.data(), s.B, s.X, s.Y, s.D);
      EXPECT_EQ(max_rel_error(k, want), 0.0)
          << "float4 " << by_four << " 64-bit " << wide << " D " << s.D;
    }
    // With a change of storage: f32 -> bf16 and bf16 -> bf16 gathers, the f32 -> bf16 scatter.
    const Bits in16 = to_bf16(in), want16 = to_bf16(want);
    Bits a = poison_bf16(n), b = poison_bf16(n);
    swap_middle_as<float, bf16>(a.data(), in.data(), s.B, s.X, s.Y, s.D);
    swap_middle_as<bf16, bf16>(b.data(), in16.data(), s.B, s.X, s.Y, s.D);
    EXPECT_EQ(a, want16) << "f32 -> bf16, D " << s.D;
    EXPECT_EQ(b, want16) << "bf16 -> bf16, D " << s.D;
  }
}

// ---- attention forward and backward --------------------------------------------------------

using Case = testing::AttentionCase;

struct Inputs {
  F q, k, v, dout;
  std::vector<std::int32_t> kv_len;
  std::vector<std::uint8_t> keep;
  float keep_scale = 1.0f;
  const std::int32_t* lens() const { return kv_len.empty() ? nullptr : kv_len.data(); }
  const std::uint8_t* mask() const { return keep.empty() ? nullptr : keep.data(); }
};

// bf16-representable inputs, so that the f32 and bf16 comparisons start from the same values.
Inputs make_inputs(const Case& c) {
  Inputs in;
  const i64 d = c.H * c.Dh;
  in.q = widen(to_bf16(random_floats(c.B * c.Tq * d, 1, -2, 2)));
  in.k = widen(to_bf16(random_floats(c.B * c.Tk * d, 2, -2, 2)));
  in.v = widen(to_bf16(random_floats(c.B * c.Tk * d, 3)));
  in.dout = widen(to_bf16(random_floats(c.B * c.Tq * d, 4)));
  in.kv_len = c.kv_len;
  in.keep = testing::attention_keep_mask(c, 5);
  in.keep_scale = static_cast<float>(testing::attention_keep_scale(c));
  return in;
}

class EmulatedAttention : public ::testing::TestWithParam<Case> {};

// attention.cu's fp32 sequence (not under bf16 products): heads gathered, S = scale q k^T,
// softmax rows (masks, dropout), out = dropped(P) v, heads scattered; then the backward.
TEST_P(EmulatedAttention, F32EqualsTheCpuKernels) {
  const Case& c = GetParam();
  const Inputs in = make_inputs(c);
  const i64 B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, Dh = c.Dh;
  const i64 rows = B * H * Tq, pairs = B * H, nq = B * Tq * H * Dh, nk = B * Tk * H * Dh;
  F out(nq), probs(rows * Tk), dq(nq), dk(nk), dv(nk), scratch(rows * Tk);
  cpu::attention_forward<float>(out.data(), probs.data(), in.q.data(), in.k.data(), in.v.data(),
                                in.lens(), in.mask(), in.keep_scale, B, H, Tq, Tk, Dh, c.causal,
                                c.q_offset);
  cpu::attention_backward<float>(dq.data(), dk.data(), dv.data(), scratch.data(), in.dout.data(),
                                 probs.data(), in.q.data(), in.k.data(), in.v.data(), in.mask(),
                                 in.keep_scale, B, H, Tq, Tk, Dh);

  // Forward.
  F qh = poison(nq), kh = poison(nk), vh = poison(nk), oh = poison(nq);
  swap_middle(qh.data(), in.q.data(), B, Tq, H, Dh);
  swap_middle(kh.data(), in.k.data(), B, Tk, H, Dh);
  swap_middle(vh.data(), in.v.data(), B, Tk, H, Dh);
  F kprobs = poison(rows * Tk);
  batched(false, true, Tq, Tk, Dh, at::attention_scale(Dh), qh.data(), Dh, Tq * Dh, kh.data(), Dh,
          Tk * Dh, kprobs.data(), Tk, Tq * Tk, pairs);
  F dropped = poison(in.keep.empty() ? 0 : rows * Tk);
  emu::launch(at::row_blocks(rows), at::kRowBlockThreads, 0, at::softmax_rows_kernel, kprobs.data(),
              in.keep.empty() ? nullptr : dropped.data(), static_cast<__nv_bfloat16*>(nullptr),
              in.lens(), in.mask(), in.keep_scale, rows, H, Tq, Tk, c.causal, c.q_offset);
  batched(false, false, Tq, Dh, Tk, 1.0f, in.keep.empty() ? kprobs.data() : dropped.data(), Tk,
          Tq * Tk, vh.data(), Dh, Tk * Dh, oh.data(), Dh, Tq * Dh, pairs);
  F kout = poison(nq);
  swap_middle(kout.data(), oh.data(), B, H, Tq, Dh);
  EXPECT_LE(max_rel_error(kprobs, probs), kTol);
  EXPECT_LE(max_rel_error(kout, out), kTol);

  // Backward, from the CPU's probabilities.
  F gh = poison(nq), dqh = poison(nq), dkh = poison(nk), dvh = poison(nk);
  swap_middle(gh.data(), in.dout.data(), B, Tq, H, Dh);
  const float* p = probs.data();
  F kept = poison(in.keep.empty() ? 0 : rows * Tk);
  if (!in.keep.empty()) {
    emu::launch(cuda::grid_for(rows * Tk), cuda::kThreads, 0, at::apply_keep_kernel, kept.data(), p,
                in.mask(), in.keep_scale, rows * Tk);
    p = kept.data();
  }
  batched(true, false, Tk, Dh, Tq, 1.0f, p, Tk, Tq * Tk, gh.data(), Dh, Tq * Dh, dvh.data(), Dh,
          Tk * Dh, pairs);
  F ds = poison(rows * Tk);
  batched(false, true, Tq, Tk, Dh, 1.0f, gh.data(), Dh, Tq * Dh, vh.data(), Dh, Tk * Dh, ds.data(),
          Tk, Tq * Tk, pairs);
  emu::launch(at::row_blocks(rows), at::kRowBlockThreads, 0, at::softmax_grad_rows_kernel,
              ds.data(), static_cast<__nv_bfloat16*>(nullptr),
              static_cast<const float*>(probs.data()), in.mask(), in.keep_scale, rows, Tk);
  const float scale = at::attention_scale(Dh);
  batched(false, false, Tq, Dh, Tk, scale, ds.data(), Tk, Tq * Tk, kh.data(), Dh, Tk * Dh,
          dqh.data(), Dh, Tq * Dh, pairs);
  batched(true, false, Tk, Dh, Tq, scale, ds.data(), Tk, Tq * Tk, qh.data(), Dh, Tq * Dh,
          dkh.data(), Dh, Tk * Dh, pairs);
  F kdq = poison(nq), kdk = poison(nk), kdv = poison(nk);
  swap_middle(kdq.data(), dqh.data(), B, H, Tq, Dh);
  swap_middle(kdk.data(), dkh.data(), B, H, Tk, Dh);
  swap_middle(kdv.data(), dvh.data(), B, H, Tk, Dh);
  EXPECT_LE(max_rel_error(kdq, dq), kTol);
  EXPECT_LE(max_rel_error(kdk, dk), kTol);
  EXPECT_LE(max_rel_error(kdv, dv), kTol);
}

// attention.cu's sequence on bf16 projections (attention_forward_bf16 / _backward_bf16 with
// T = bf16): the gathers write bf16 operands, the softmax the bf16 P (dropped) operand, the
// gradient the bf16 dS; products in fp32 from those operands; results scattered into bf16.
TEST_P(EmulatedAttention, Bf16EqualsTheCpuOps) {
  const Bf16Products bf16_products;
  const Case& c = GetParam();
  const Inputs in = make_inputs(c);
  const i64 B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, Dh = c.Dh, d = H * Dh;
  const i64 rows = B * H * Tq, pairs = B * H, nq = B * Tq * H * Dh, nk = B * Tk * H * Dh;
  const Bits q = to_bf16(in.q), k = to_bf16(in.k), v = to_bf16(in.v), dout = to_bf16(in.dout);

  Tensor lens, keep;
  if (!in.kv_len.empty()) {
    lens = Tensor::empty({B}, DType::i32);
    std::copy(in.kv_len.begin(), in.kv_len.end(), lens.data<std::int32_t>());
  }
  if (!in.keep.empty()) {
    keep = Tensor::empty({B, H, Tq, Tk}, DType::u8);
    std::copy(in.keep.begin(), in.keep.end(), keep.data<std::uint8_t>());
  }
  const Tensor tq = tensor(q, {B, Tq, d}), tk = tensor(k, {B, Tk, d}), tv = tensor(v, {B, Tk, d});
  Tensor out, probs, dq, dk, dv, scratch;
  ops::attention_forward(out, probs, tq, tk, tv, lens, keep, in.keep_scale, H, c.causal,
                         c.q_offset);
  ops::attention_backward(dq, dk, dv, scratch, tensor(dout, {B, Tq, d}), probs, tq, tk, tv, keep,
                          in.keep_scale, H);
  ASSERT_EQ(out.dtype(), DType::bf16);
  ASSERT_EQ(dq.dtype(), DType::bf16);

  // Forward.
  Bits q16 = poison_bf16(nq), k16 = poison_bf16(nk), v16 = poison_bf16(nk),
       p16 = poison_bf16(rows * Tk);
  swap_middle_as<bf16, bf16>(q16.data(), q.data(), B, Tq, H, Dh);
  swap_middle_as<bf16, bf16>(k16.data(), k.data(), B, Tk, H, Dh);
  swap_middle_as<bf16, bf16>(v16.data(), v.data(), B, Tk, H, Dh);
  F kprobs = poison(rows * Tk), oh = poison(nq);
  batched(false, true, Tq, Tk, Dh, at::attention_scale(Dh), widen(q16).data(), Dh, Tq * Dh,
          widen(k16).data(), Dh, Tk * Dh, kprobs.data(), Tk, Tq * Tk, pairs);
  emu::launch(at::row_blocks(rows), at::kRowBlockThreads, 0, at::softmax_rows_kernel, kprobs.data(),
              static_cast<float*>(nullptr), nv(p16), in.lens(), in.mask(), in.keep_scale, rows, H,
              Tq, Tk, c.causal, c.q_offset);
  batched(false, false, Tq, Dh, Tk, 1.0f, widen(p16).data(), Tk, Tq * Tk, widen(v16).data(), Dh,
          Tk * Dh, oh.data(), Dh, Tq * Dh, pairs);
  Bits kout = poison_bf16(nq);
  swap_middle_as<float, bf16>(kout.data(), oh.data(), B, H, Tq, Dh);
  EXPECT_LE(max_rel_error(kprobs, values(probs)), 1e-2);
  EXPECT_LE(max_rel_error(widen(kout), values(out)), 1e-2);

  // Backward, from the CPU's probabilities.
  const F cpu_probs = values(probs);
  Bits g16 = poison_bf16(nq), s16 = poison_bf16(rows * Tk);
  swap_middle_as<bf16, bf16>(g16.data(), dout.data(), B, Tq, H, Dh);
  emu::launch(cuda::grid_for(rows * Tk), cuda::kThreads, 0, at::dropped_bf16_kernel, nv(s16),
              cpu_probs.data(), in.mask(), in.keep_scale, rows * Tk);
  F dqh = poison(nq), dkh = poison(nk), dvh = poison(nk), ds = poison(rows * Tk);
  batched(true, false, Tk, Dh, Tq, 1.0f, widen(s16).data(), Tk, Tq * Tk, widen(g16).data(), Dh,
          Tq * Dh, dvh.data(), Dh, Tk * Dh, pairs);
  batched(false, true, Tq, Tk, Dh, 1.0f, widen(g16).data(), Dh, Tq * Dh, widen(v16).data(), Dh,
          Tk * Dh, ds.data(), Tk, Tq * Tk, pairs);
  s16 = poison_bf16(rows * Tk);
  emu::launch(at::row_blocks(rows), at::kRowBlockThreads, 0, at::softmax_grad_rows_kernel,
              ds.data(), nv(s16), cpu_probs.data(), in.mask(), in.keep_scale, rows, Tk);
  const float scale = at::attention_scale(Dh);
  batched(false, false, Tq, Dh, Tk, scale, widen(s16).data(), Tk, Tq * Tk, widen(k16).data(), Dh,
          Tk * Dh, dqh.data(), Dh, Tq * Dh, pairs);
  batched(true, false, Tk, Dh, Tq, scale, widen(s16).data(), Tk, Tq * Tk, widen(q16).data(), Dh,
          Tq * Dh, dkh.data(), Dh, Tk * Dh, pairs);
  Bits kdq = poison_bf16(nq), kdk = poison_bf16(nk), kdv = poison_bf16(nk);
  swap_middle_as<float, bf16>(kdq.data(), dqh.data(), B, H, Tq, Dh);
  swap_middle_as<float, bf16>(kdk.data(), dkh.data(), B, H, Tk, Dh);
  swap_middle_as<float, bf16>(kdv.data(), dvh.data(), B, H, Tk, Dh);
  EXPECT_LE(norm_rel_error(widen(kdq), values(dq)), 1e-2);
  EXPECT_LE(norm_rel_error(widen(kdk), values(dk)), 1e-2);
  EXPECT_LE(norm_rel_error(widen(kdv), values(dv)), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, EmulatedAttention,
    ::testing::Values(Case{2, 2, 5, 37, 8, {37, 20}, false, 0, 0.0},  // padded keys, float4
                      Case{2, 2, 5, 37, 6, {}, false, 0, 0.2},        // dropout, scalar moves
                      Case{1, 3, 9, 9, 4, {}, true, 0, 0.0},          // causal self-attention
                      Case{2, 1, 7, 40, 8, {40, 0}, true, -2, 0.1},   // empty sequence, no key
                      Case{1, 2, 6, 70, 12, {}, true, 30, 0.0},       // query offset
                      Case{2, 1, 3, 5, 5, {4, 5}, false, 0, 0.3}));   // fewer keys than lanes

}  // namespace
}  // namespace tr
