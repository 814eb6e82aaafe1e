// The CUDA flash attention kernels (bf16: layers/cuda/flash_attention_mma_kernels.cuh, the
// default, and flash_attention_kernels.cuh, WMMA; flash_attention_f32_kernels.cuh for fp32),
// compiled for the host and run under tests/common/cuda_emulation.h, against their CPU twin
// (ops::flash_attention_forward/backward on bf16 tensors under bf16 products, on f32 tensors for
// the fp32 kernels): the kernels' tiling, masks, online softmax, the dk/dv and dq passes and
// their row and column bounds are checked here in CI; the GPU run
// (tests/gpu/test_cuda_flash_attention.cpp) checks the same on the hardware. Shapes cover ragged
// 64-row tiles, each padded head width (16, 32, 64, 128), vector and scalar loads, cross-attention,
// key padding with an empty sequence, causal masks with query offsets (rows without a visible key),
// and dropout. Outputs start as NaN, so an element the kernels do not write fails. bf16: bound 1e-2
// in the 2-norm (the kernels round each tile's unnormalised probabilities, the CPU the normalised
// ones). fp32: 1e-5 of each result's largest magnitude, element by element (sums in another order
// only).
#include "common/cuda_emulation.h"
// (the emulation first: the kernel header compiles against it)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "common/error_measures.h"
#include "common/flash_inputs.h"
#include "layers/cpu/bf16.h"
#include "layers/cuda/flash_attention_f32_kernels.cuh"
#include "layers/cuda/flash_attention_kernels.cuh"
#include "layers/cuda/flash_attention_mma_kernels.cuh"
#include "layers/ops.h"

namespace tr {
namespace {

namespace flash = cuda::flash;
using i64 = std::int64_t;

struct Case {
  testing::AttentionCase c;
  bool vec;  // 16-byte row loads (needs Dh % 8 == 0)
};
void PrintTo(const Case& c, std::ostream* os) {
  testing::PrintTo(c.c, os);
  *os << (c.vec ? " vector loads" : " scalar loads");
}

std::vector<float> widen(const Tensor& t) {
  Tensor f = Tensor::empty(t.shape(), DType::f32);
  f.copy_from(t);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.numel());
}
std::vector<float> widen(const std::vector<flash::bfloat>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = __bfloat162float(v[i]);
  return out;
}

using testing::norm_rel_error;

const cuda::bf16* bits(const Tensor& t) {
  return reinterpret_cast<const cuda::bf16*>(t.data<BFloat16>());
}

// The bf16 kernels of one family: the mma.sync ones (flash_attention_mma_kernels.cuh, the
// default) or the WMMA ones (flash_attention_kernels.cuh, TR_FLASH_KERNELS=wmma), launched as
// flash_attention.cu launches them.
enum class Family { wmma, mma };

template <int DHP>
void forward(Family f, flash::bfloat* out, float* lse, const flash::Problem& p) {
  const flash::Grid g = flash::query_grid(p);
  if (f == Family::mma)
    emu::launch({g.x, g.y, 1}, {flash::kFlashThreads, 1, 1}, flash::mma_forward_smem<DHP>(),
                flash::flash_mma_forward_kernel<DHP>, out, lse, p);
  else
    emu::launch({g.x, g.y, 1}, {flash::kFlashThreads, 1, 1}, flash::forward_smem<DHP>(),
                flash::flash_forward_kernel<DHP>, out, lse, p);
}

template <int DHP>
void backward(Family f, flash::bfloat* dq, flash::bfloat* dk, flash::bfloat* dv,
              const flash::bfloat* dout, const flash::bfloat* out, const float* lse,
              const flash::Problem& p) {
  std::vector<float> rowdot(static_cast<std::size_t>(p.B * p.H * p.Tq), NAN);
  emu::launch({3, 1, 1}, {256, 1, 1}, 0, flash::row_dot_kernel<flash::bfloat>, rowdot.data(), dout,
              out, p);
  const float* r = rowdot.data();
  const bool mma = f == Family::mma;
  const std::size_t smem = mma ? flash::mma_backward_smem<DHP>() : flash::backward_smem<DHP>();
  const emu::Dim3 threads{flash::kFlashThreads, 1, 1};
  if (p.Tk > 0) {
    const flash::Grid g = flash::key_grid(p);
    if (mma)
      emu::launch({g.x, g.y, 1}, threads, smem, flash::flash_mma_dkdv_kernel<DHP>, dk, dv, dout,
                  lse, r, p);
    else
      emu::launch({g.x, g.y, 1}, threads, smem, flash::flash_dkdv_kernel<DHP>, dk, dv, dout, lse, r,
                  p);
  }
  const flash::Grid g = flash::query_grid(p);
  if (mma)
    emu::launch({g.x, g.y, 1}, threads, smem, flash::flash_mma_dq_kernel<DHP>, dq, dout, lse, r, p);
  else
    emu::launch({g.x, g.y, 1}, threads, smem, flash::flash_dq_kernel<DHP>, dq, dout, lse, r, p);
}

class EmulatedFlashKernels : public ::testing::TestWithParam<std::tuple<Case, Family>> {
 protected:
  void SetUp() override { cpu::set_bf16_products(true); }
  void TearDown() override { cpu::set_bf16_products(false); }
};

TEST_P(EmulatedFlashKernels, EqualTheCpuTwin) {
  const testing::AttentionCase& c = std::get<0>(GetParam()).c;
  const bool vec = std::get<0>(GetParam()).vec;
  const Family family = std::get<1>(GetParam());
  const testing::FlashInputs in = testing::flash_inputs(c);
  const Tensor &q = in.q, &k = in.k, &v = in.v, &dout = in.dout, &lens = in.kv_len, &keep = in.keep;
  const double keep_scale = in.keep_scale;
  const testing::FlashResults cpu = testing::flash_on_cpu(c, in);
  const Tensor &out = cpu.out, &lse = cpu.lse, &dq = cpu.dq, &dk = cpu.dk, &dv = cpu.dv;
  // The kernels; the backward from the twin's forward results, so that it is checked alone.
  const flash::Problem p = flash::make_problem(
      bits(q), bits(k), bits(v), lens.defined() ? lens.data<std::int32_t>() : nullptr,
      keep.defined() ? keep.data<std::uint8_t>() : nullptr, static_cast<float>(keep_scale), c.B,
      c.H, c.Tq, c.Tk, c.Dh, c.causal, c.q_offset, vec);
  const flash::bfloat nan = __ushort_as_bfloat16(0xFFFF);
  std::vector<flash::bfloat> k_out(out.numel(), nan), k_dq(q.numel(), nan), k_dk(k.numel(), nan),
      k_dv(v.numel(), nan);
  std::vector<float> k_lse(lse.numel(), NAN);
  const auto* dout_bits = reinterpret_cast<const flash::bfloat*>(dout.data<BFloat16>());
  const auto* out_bits = reinterpret_cast<const flash::bfloat*>(out.data<BFloat16>());
  switch (flash::padded_head_dim(c.Dh)) {
    case 16:
      forward<16>(family, k_out.data(), k_lse.data(), p);
      backward<16>(family, k_dq.data(), k_dk.data(), k_dv.data(), dout_bits, out_bits,
                   lse.data<float>(), p);
      break;
    case 32:
      forward<32>(family, k_out.data(), k_lse.data(), p);
      backward<32>(family, k_dq.data(), k_dk.data(), k_dv.data(), dout_bits, out_bits,
                   lse.data<float>(), p);
      break;
    case 64:
      forward<64>(family, k_out.data(), k_lse.data(), p);
      backward<64>(family, k_dq.data(), k_dk.data(), k_dv.data(), dout_bits, out_bits,
                   lse.data<float>(), p);
      break;
    default:
      forward<128>(family, k_out.data(), k_lse.data(), p);
      backward<128>(family, k_dq.data(), k_dk.data(), k_dv.data(), dout_bits, out_bits,
                    lse.data<float>(), p);
  }
  EXPECT_LE(norm_rel_error(widen(k_out), widen(out)), 1e-2);
  testing::expect_lse_near(k_lse, widen(lse));
  EXPECT_LE(norm_rel_error(widen(k_dq), widen(dq)), 1e-2);
  EXPECT_LE(norm_rel_error(widen(k_dk), widen(dk)), 1e-2);
  EXPECT_LE(norm_rel_error(widen(k_dv), widen(dv)), 1e-2);
}

template <int DHP>
void forward_f32(float* out, float* lse, const flash::ProblemF32& p) {
  const flash::Grid g = flash::query_grid(p);
  emu::launch({g.x, g.y, 1}, {flash::kF32Threads, 1, 1}, flash::f32_forward_smem<DHP>(),
              flash::flash_forward_f32_kernel<DHP>, out, lse, p);
}

template <int DHP>
void backward_f32(float* dq, float* dk, float* dv, const float* dout, const float* out,
                  const float* lse, const flash::ProblemF32& p) {
  std::vector<float> rowdot(static_cast<std::size_t>(p.B * p.H * p.Tq), NAN);
  emu::launch({3, 1, 1}, {256, 1, 1}, 0, flash::row_dot_kernel<float>, rowdot.data(), dout, out, p);
  if (p.Tk > 0) {
    const flash::Grid g = flash::key_grid(p);
    emu::launch({g.x, g.y, 1}, {flash::kF32Threads, 1, 1}, flash::f32_dkdv_smem<DHP>(),
                flash::flash_dkdv_f32_kernel<DHP>, dk, dv, dout, lse,
                static_cast<const float*>(rowdot.data()), p);
  }
  const flash::Grid g = flash::query_grid(p);
  emu::launch({g.x, g.y, 1}, {flash::kF32Threads, 1, 1}, flash::f32_dq_smem<DHP>(),
              flash::flash_dq_f32_kernel<DHP>, dq, dout, lse,
              static_cast<const float*>(rowdot.data()), p);
}

std::vector<float> values(const Tensor& t) {
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

using testing::max_error_to_largest;

using EmulatedFlashF32Kernels = ::testing::TestWithParam<Case>;

TEST_P(EmulatedFlashF32Kernels, EqualTheCpuTwin) {
  const testing::AttentionCase& c = GetParam().c;
  const testing::FlashInputs in = testing::widened_to_f32(testing::flash_inputs(c));
  const testing::FlashResults cpu = testing::flash_on_cpu(c, in);
  const flash::ProblemF32 p = flash::make_problem(
      in.q.data<float>(), in.k.data<float>(), in.v.data<float>(),
      in.kv_len.defined() ? in.kv_len.data<std::int32_t>() : nullptr,
      in.keep.defined() ? in.keep.data<std::uint8_t>() : nullptr, static_cast<float>(in.keep_scale),
      c.B, c.H, c.Tq, c.Tk, c.Dh, c.causal, c.q_offset, GetParam().vec && c.Dh % 4 == 0);
  std::vector<float> k_out(cpu.out.numel(), NAN), k_lse(cpu.lse.numel(), NAN),
      k_dq(in.q.numel(), NAN), k_dk(in.k.numel(), NAN), k_dv(in.v.numel(), NAN);
  const float *dout = in.dout.data<float>(), *out = cpu.out.data<float>(),
              *lse = cpu.lse.data<float>();
  switch (flash::padded_head_dim(c.Dh)) {
    case 16:
      forward_f32<16>(k_out.data(), k_lse.data(), p);
      backward_f32<16>(k_dq.data(), k_dk.data(), k_dv.data(), dout, out, lse, p);
      break;
    case 32:
      forward_f32<32>(k_out.data(), k_lse.data(), p);
      backward_f32<32>(k_dq.data(), k_dk.data(), k_dv.data(), dout, out, lse, p);
      break;
    case 64:
      forward_f32<64>(k_out.data(), k_lse.data(), p);
      backward_f32<64>(k_dq.data(), k_dk.data(), k_dv.data(), dout, out, lse, p);
      break;
    default:
      forward_f32<128>(k_out.data(), k_lse.data(), p);
      backward_f32<128>(k_dq.data(), k_dk.data(), k_dv.data(), dout, out, lse, p);
  }
  EXPECT_LE(max_error_to_largest(k_out, values(cpu.out)), 1e-5);
  testing::expect_lse_near(k_lse, values(cpu.lse), 1e-5);
  EXPECT_LE(max_error_to_largest(k_dq, values(cpu.dq)), 1e-5);
  EXPECT_LE(max_error_to_largest(k_dk, values(cpu.dk)), 1e-5);
  EXPECT_LE(max_error_to_largest(k_dv, values(cpu.dv)), 1e-5);
}

const auto kCases =
    ::testing::Values(Case{{2, 2, 6, 6, 8, {6, 4}, true, 0, 0.0}, true},         // one small tile
                      Case{{1, 2, 70, 75, 12, {75}, false, 0, 0.1}, false},      // scalar loads
                      Case{{2, 1, 65, 130, 32, {130, 0}, false, 0, 0.0}, true},  // empty sequence
                      Case{{1, 1, 80, 80, 64, {}, true, -5, 0.0}, true},         // rows see no key
                      Case{{1, 1, 40, 100, 64, {}, true, 60, 0.2}, true},        // query offset
                      Case{{1, 1, 33, 20, 128, {}, false, 0, 0.0}, true},        // widest heads
                      Case{{1, 2, 67, 67, 16, {67}, true, 0, 0.2}, false},       // causal+dropout
                      Case{{2, 1, 70, 90, 16, {90, 50}, false, 0, 0.1}, true},   // padded+dropout
                      Case{{1, 3, 20, 24, 5, {}, true, 0, 0.0}, false});  // odd heads: 2-byte rows

INSTANTIATE_TEST_SUITE_P(Shapes, EmulatedFlashKernels,
                         ::testing::Combine(kCases, ::testing::Values(Family::wmma, Family::mma)),
                         [](const auto& info) {
                           return std::to_string(info.index) +
                                  (std::get<1>(info.param) == Family::mma ? "_mma" : "_wmma");
                         });
INSTANTIATE_TEST_SUITE_P(Shapes, EmulatedFlashF32Kernels, kCases);

}  // namespace
}  // namespace tr
