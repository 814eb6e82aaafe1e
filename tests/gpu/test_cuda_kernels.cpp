// Every CUDA kernel against its CPU twin (layers/cpu/kernels.h) on the same random inputs:
// fp32 within 1e-5 relative, bf16 within 1e-2, dropout masks bit-identical. Skips where no GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gpu/cuda_test.h"
#include "layers/cpu/kernels.h"
#include "layers/cuda/kernels.h"
#include "layers/cuda/runtime.h"

namespace tr {
namespace {

using gpu_test::max_rel_error;
using gpu_test::norm_rel_error;
using gpu_test::poison;
using gpu_test::random_floats;
using i64 = std::int64_t;
using F = std::vector<float>;

constexpr double kTol = 1e-5;

// n zeros. Outputs are made with poison(n) and zeros(n), functions: a declaration
// `Dev<float> out(F(n))` would parse as a function declaration.
template <typename T>
std::vector<T> zeros(i64 n) {
  return std::vector<T>(static_cast<std::size_t>(n));
}

// A device copy of host values that can be read back: the kernels take raw pointers.
template <typename T>
struct Dev {
  Tensor t;
  explicit Dev(const std::vector<T>& host)
      : t(gpu_test::device_tensor(host, {static_cast<i64>(host.size())})) {}
  T* p() const { return t.data<T>(); }
  std::vector<T> get() const { return gpu_test::to_host_vector<T>(t); }
};

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override { TR_REQUIRE_CUDA(); }
};

TEST_F(CudaKernels, GemmAllTransposes) {
  const i64 M = 37, N = 53, K = 29;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const i64 lda = ta ? M : K, ldb = tb ? K : N;
      const F a = random_floats(M * K, 1), b = random_floats(K * N, 2), c = random_floats(M * N, 3);
      F ref = c;
      cpu::gemm<float>(ta, tb, M, N, K, 0.7f, a.data(), lda, b.data(), ldb, 0.3f, ref.data(), N);
      Dev<float> da(a), db(b), dc(c);
      cuda::gemm(ta, tb, M, N, K, 0.7f, da.p(), lda, db.p(), ldb, 0.3f, dc.p(), N);
      EXPECT_LE(max_rel_error(dc.get(), ref), kTol) << "trans_a " << ta << " trans_b " << tb;
    }
}

TEST_F(CudaKernels, GemmBiasEpilogue) {
  const i64 M = 64, N = 48, K = 40;
  const F a = random_floats(M * K, 4), w = random_floats(N * K, 5), bias = random_floats(N, 6);
  F ref(M * N);
  cpu::bias_fill(ref.data(), bias.data(), M, N);
  cpu::gemm<float>(false, true, M, N, K, 1.0f, a.data(), K, w.data(), K, 1.0f, ref.data(), N);
  Dev<float> da(a), dw(w), db(bias), dc(poison(M * N));
  cuda::gemm_bias(false, true, M, N, K, da.p(), K, dw.p(), K, db.p(), dc.p(), N);
  EXPECT_LE(max_rel_error(dc.get(), ref), kTol);
}

TEST_F(CudaKernels, GemmBf16) {
  const i64 M = 64, N = 96, K = 128;
  const F a = random_floats(M * K, 7), b = random_floats(K * N, 8);
  // The reference multiplies the bf16-rounded inputs in fp32: only accumulation and the
  // output's rounding differ.
  Dev<float> fa(a), fb(b);
  // bf16 storage has no C++ element type here: raw device tensors of DType::bf16.
  const Tensor ha = Tensor::empty({M * K}, DType::bf16, Device::cuda),
               hb = Tensor::empty({K * N}, DType::bf16, Device::cuda),
               hc = Tensor::empty({M * N}, DType::bf16, Device::cuda);
  auto bits = [](const Tensor& t) { return static_cast<cuda::bf16*>(t.raw()); };
  cuda::f32_to_bf16(bits(ha), fa.p(), M * K);
  cuda::f32_to_bf16(bits(hb), fb.p(), K * N);
  Dev<float> ra(poison(a.size())), rb(poison(b.size())), out(poison(M * N));
  cuda::bf16_to_f32(ra.p(), bits(ha), M * K);
  cuda::bf16_to_f32(rb.p(), bits(hb), K * N);
  const F a16 = ra.get(), b16 = rb.get();
  F ref(M * N);
  cpu::gemm<float>(false, false, M, N, K, 1.0f, a16.data(), K, b16.data(), N, 0.0f, ref.data(), N);
  cuda::gemm_bf16(false, false, M, N, K, 1.0f, bits(ha), K, bits(hb), N, 0.0f, bits(hc), N);
  cuda::bf16_to_f32(out.p(), bits(hc), M * N);
  EXPECT_LE(max_rel_error(out.get(), ref), 1e-2);
  EXPECT_LE(max_rel_error(a16, a), 1e-2);  // the conversion rounds to 8 bits of mantissa
}

// Round to the nearest bf16, ties to even (finite values): what the device's conversion does.
float round_to_bf16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  u &= 0xFFFF0000u;
  std::memcpy(&x, &u, sizeof u);
  return x;
}

F rounded_to_bf16(F v) {
  for (float& x : v) x = round_to_bf16(x);
  return v;
}

// train.precision: bf16. Every fp32 product takes bf16-rounded operands: the result equals the
// fp32 product of the rounded operands up to summation order (1e-5), differs from the
// unrounded product by bf16 rounding (in norm above 1e-5, below 1e-2).
void check_linear_backward_products(bool bf16);
void check_linear_backward_products_once(bool bf16, bool epilogue);

TEST_F(CudaKernels, Bf16MatmulsRoundTheOperands) {
  struct Reset {
    ~Reset() { cuda::set_bf16_matmuls(false); }
  } reset;
  cuda::set_bf16_matmuls(true);
  const i64 M = 37, N = 53, K = 96;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const i64 lda = ta ? M : K, ldb = tb ? K : N;
      const F a = random_floats(M * K, 61), b = random_floats(K * N, 62),
              c = random_floats(M * N, 63);
      F exact = c, of_rounded = c;
      cpu::gemm<float>(ta, tb, M, N, K, 0.7f, a.data(), lda, b.data(), ldb, 0.3f, exact.data(), N);
      cpu::gemm<float>(ta, tb, M, N, K, 0.7f, rounded_to_bf16(a).data(), lda,
                       rounded_to_bf16(b).data(), ldb, 0.3f, of_rounded.data(), N);
      Dev<float> da(a), db(b), dc(c);
      cuda::gemm(ta, tb, M, N, K, 0.7f, da.p(), lda, db.p(), ldb, 0.3f, dc.p(), N);
      const F got = dc.get();
      EXPECT_LE(max_rel_error(got, of_rounded), kTol) << "trans_a " << ta << " trans_b " << tb;
      EXPECT_LE(norm_rel_error(got, exact), 1e-2);
      EXPECT_GT(norm_rel_error(got, exact), kTol) << "the operands were not rounded";
    }
  // The bias epilogue and the batched products (attention) too.
  const F a = random_floats(M * K, 64), w = random_floats(N * K, 65), bias = random_floats(N, 66);
  F ref(M * N);
  cpu::bias_fill(ref.data(), bias.data(), M, N);
  cpu::gemm<float>(false, true, M, N, K, 1.0f, rounded_to_bf16(a).data(), K,
                   rounded_to_bf16(w).data(), K, 1.0f, ref.data(), N);
  Dev<float> da(a), dw(w), dbias(bias), dc(poison(M * N));
  cuda::gemm_bias(false, true, M, N, K, da.p(), K, dw.p(), K, dbias.p(), dc.p(), N);
  EXPECT_LE(max_rel_error(dc.get(), ref), kTol);
  const i64 batch = 3;
  const F x = random_floats(batch * M * K, 67), y = random_floats(batch * N * K, 68);
  F refb(batch * M * N);
  const F xr = rounded_to_bf16(x), yr = rounded_to_bf16(y);
  for (i64 i = 0; i < batch; ++i)
    cpu::gemm<float>(false, true, M, N, K, 0.5f, xr.data() + i * M * K, K, yr.data() + i * N * K, K,
                     0.0f, refb.data() + i * M * N, N);
  Dev<float> dx(x), dy(y), dout(poison(batch * M * N));
  cuda::gemm_strided_batched(false, true, M, N, K, 0.5f, dx.p(), K, M * K, dy.p(), K, N * K, 0.0f,
                             dout.p(), N, M * N, batch);
  EXPECT_LE(max_rel_error(dout.get(), refb), kTol);
  check_linear_backward_products(/*bf16=*/true);
}

// A linear layer's backward (under bf16 products dy rounded once for all): dx set and added,
// dweight and dbias accumulated. The bias gradient is summed by the weight gradient's product
// (cuBLASLt's BGRADB epilogue: the sums of the operand it multiplies, rounded under bf16
// products) or, where cuBLASLt has no algorithm for that, by the column-sum kernel (over dy as
// given): either sum is accepted, and the message says which it matched. With the epilogue
// switched off the kernel's sum is required.
void check_linear_backward_products(bool bf16) {
  struct Restore {
    ~Restore() { cuda::set_bias_gradient_epilogue(true); }
  } restore;
  for (bool epilogue : {true, false}) {
    cuda::set_bias_gradient_epilogue(epilogue);
    SCOPED_TRACE(epilogue ? "epilogue allowed" : "epilogue off");
    check_linear_backward_products_once(bf16, epilogue);
  }
}

void check_linear_backward_products_once(bool bf16, bool epilogue) {
  const i64 rows = 45, in = 24, out = 40;
  const F gy = random_floats(rows * out, 69), xs = random_floats(rows * in, 70),
          wt = random_floats(out * in, 71), dx0 = random_floats(rows * in, 72),
          dw0 = random_floats(out * in, 73), db0 = random_floats(out, 74);
  const auto maybe_rounded = [bf16](const F& v) { return bf16 ? rounded_to_bf16(v) : v; };
  const F dyr = maybe_rounded(gy), xr = maybe_rounded(xs), wr = maybe_rounded(wt);
  F db_of_operand = db0, db_of_dy = db0;
  cpu::bias_backward_accumulate(db_of_operand.data(), dyr.data(), rows, out);
  cpu::bias_backward_accumulate(db_of_dy.data(), gy.data(), rows, out);
  for (float beta : {0.0f, 1.0f}) {
    F dx_ref = dx0, dw_ref = dw0;
    cpu::gemm<float>(false, false, rows, in, out, 1.0f, dyr.data(), out, wr.data(), in, beta,
                     dx_ref.data(), in);
    cpu::gemm<float>(true, false, out, in, rows, 1.0f, dyr.data(), out, xr.data(), in, 1.0f,
                     dw_ref.data(), in);
    Dev<float> ddy(gy), dxs(xs), dwt(wt), ddx(dx0), ddw(dw0), ddb(db0);
    const long declined = cuda::bias_gradient_epilogue_fallbacks();
    cuda::linear_backward_products(ddx.p(), beta, ddw.p(), ddb.p(), ddy.p(), dxs.p(), dwt.p(), rows,
                                   in, out);
    if (epilogue && beta == 0.0f)
      std::printf("[ measured ] %s products: the bias gradient from %s\n", bf16 ? "bf16" : "fp32",
                  cuda::bias_gradient_epilogue_fallbacks() > declined
                      ? "the column-sum kernel (cuBLASLt declined BGRADB)"
                      : "cuBLASLt's BGRADB epilogue");
    EXPECT_LE(max_rel_error(ddx.get(), dx_ref), kTol) << "beta " << beta;
    EXPECT_LE(max_rel_error(ddw.get(), dw_ref), kTol) << "beta " << beta;
    const double by_epilogue = max_rel_error(ddb.get(), db_of_operand),
                 by_kernel = max_rel_error(ddb.get(), db_of_dy);
    EXPECT_LE(epilogue ? std::min(by_epilogue, by_kernel) : by_kernel, kTol)
        << "beta " << beta << ": dbias against the epilogue's sums " << by_epilogue
        << ", the kernel's " << by_kernel;
    // Without a bias the same products.
    Dev<float> ddx2(dx0), ddw2(dw0);
    cuda::linear_backward_products(ddx2.p(), beta, ddw2.p(), nullptr, ddy.p(), dxs.p(), dwt.p(),
                                   rows, in, out);
    EXPECT_EQ(ddx2.get(), ddx.get());
    EXPECT_LE(max_rel_error(ddw2.get(), dw_ref), kTol) << "beta " << beta << ", no bias";
  }
}

TEST_F(CudaKernels, LinearBackwardProductsWithBiasGradient) {
  check_linear_backward_products(/*bf16=*/false);
}

TEST_F(CudaKernels, Elementwise) {
  const i64 rows = 33, cols = 70, n = rows * cols;
  const F x = random_floats(n, 9, -3, 3), y = random_floats(n, 10), bias = random_floats(cols, 11);
  Dev<float> dx(x), dy(y), db(bias), out(poison(n));
  F ref(n);

  cpu::bias_add(ref.data(), x.data(), bias.data(), rows, cols);
  cuda::bias_add(out.p(), dx.p(), db.p(), rows, cols);
  EXPECT_LE(max_rel_error(out.get(), ref), kTol) << "bias_add";

  cpu::bias_fill(ref.data(), bias.data(), rows, cols);
  cuda::bias_fill(out.p(), db.p(), rows, cols);
  EXPECT_LE(max_rel_error(out.get(), ref), kTol) << "bias_fill";

  F dbias_ref = bias;
  Dev<float> dbias(bias);
  cpu::bias_backward_accumulate(dbias_ref.data(), y.data(), rows, cols);
  cuda::bias_backward_accumulate(dbias.p(), dy.p(), rows, cols);
  EXPECT_LE(max_rel_error(dbias.get(), dbias_ref), kTol) << "bias_backward_accumulate";

  cpu::add(ref.data(), x.data(), y.data(), n);
  cuda::add(out.p(), dx.p(), dy.p(), n);
  EXPECT_LE(max_rel_error(out.get(), ref), kTol) << "add";

  cpu::add_accumulate(ref.data(), x.data(), n);
  cuda::add_accumulate(out.p(), dx.p(), n);
  EXPECT_LE(max_rel_error(out.get(), ref), kTol) << "add_accumulate";

  cpu::scale(ref.data(), x.data(), 0.37f, n);
  cuda::scale(out.p(), dx.p(), 0.37f, n);
  EXPECT_LE(max_rel_error(out.get(), ref), kTol) << "scale";
}

TEST_F(CudaKernels, Activations) {
  const i64 n = 4099;
  const F x = random_floats(n, 12, -5, 5), g = random_floats(n, 13);
  Dev<float> dx(x), dg(g), out(poison(n)), din(poison(n));
  F ref(n), dref(n);
  cpu::gelu_forward(ref.data(), x.data(), n);
  cuda::gelu_forward(out.p(), dx.p(), n);
  EXPECT_LE(max_rel_error(out.get(), ref), kTol) << "gelu_forward";
  cpu::gelu_backward<float>(dref.data(), g.data(), x.data(), n);
  cuda::gelu_backward(din.p(), dg.p(), dx.p(), n);
  EXPECT_LE(max_rel_error(din.get(), dref), kTol) << "gelu_backward";
  cpu::relu_forward(ref.data(), x.data(), n);
  cuda::relu_forward(out.p(), dx.p(), n);
  EXPECT_EQ(out.get(), ref) << "relu_forward";
  cpu::relu_backward(dref.data(), g.data(), x.data(), n);
  cuda::relu_backward(din.p(), dg.p(), dx.p(), n);
  EXPECT_EQ(din.get(), dref) << "relu_backward";
}

TEST_F(CudaKernels, LayerNormForwardBackward) {
  const i64 rows = 19, cols = 300;
  F x = random_floats(rows * cols, 14, -2, 2);
  // A row far from zero mean (+10: a float ulp of the mean, which may differ between the
  // devices by one, times rstd stays under the tolerance).
  for (i64 i = 0; i < cols; ++i) x[i] += 10.0f;
  const F w = random_floats(cols, 15), b = random_floats(cols, 16);
  const F g = random_floats(rows * cols, 17), res = random_floats(rows * cols, 18);
  F y(rows * cols), mean(rows), rstd(rows);
  cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows,
                         cols, 1e-5f);
  Dev<float> dx(x), dw(w), db(b), dy(poison(rows * cols)), dmean(poison(rows)), drstd(poison(rows));
  cuda::layernorm_forward(dy.p(), dmean.p(), drstd.p(), dx.p(), dw.p(), db.p(), rows, cols, 1e-5f);
  EXPECT_LE(max_rel_error(dy.get(), y), kTol);
  EXPECT_LE(max_rel_error(dmean.get(), mean), kTol);
  EXPECT_LE(max_rel_error(drstd.get(), rstd), kTol);

  // The one-pass backward (the default at this width) and the two-pass one.
  struct Restore {
    ~Restore() { cuda::set_layernorm_one_pass_backward(true); }
  } restore;
  for (bool one_pass : {true, false})
    for (bool with_residual : {false, true}) {
      cuda::set_layernorm_one_pass_backward(one_pass);
      F din(rows * cols), dwr = w, dbr = b;  // parameter gradients accumulate onto w, b
      cpu::layernorm_backward(din.data(), dwr.data(), dbr.data(), g.data(), x.data(), w.data(),
                              mean.data(), rstd.data(), rows, cols,
                              with_residual ? res.data() : nullptr);
      Dev<float> ddin(poison(rows * cols)), ddw(w), ddb(b), dg(g), dres(res);
      cuda::layernorm_backward(ddin.p(), ddw.p(), ddb.p(), dg.p(), dx.p(), dw.p(), dmean.p(),
                               drstd.p(), rows, cols, with_residual ? dres.p() : nullptr);
      const std::string which = std::string(one_pass ? "one pass" : "two passes") + ", residual " +
                                (with_residual ? "yes" : "no");
      EXPECT_LE(max_rel_error(ddin.get(), din), kTol) << which;
      EXPECT_LE(max_rel_error(ddw.get(), dwr), kTol) << which;
      EXPECT_LE(max_rel_error(ddb.get(), dbr), kTol) << which;
    }
}

TEST_F(CudaKernels, SoftmaxForwardBackward) {
  const i64 rows = 21, cols = 517;
  const F x = random_floats(rows * cols, 19, -8, 8), g = random_floats(rows * cols, 20);
  F y(rows * cols), din(rows * cols);
  cpu::softmax_forward(y.data(), x.data(), rows, cols);
  cpu::softmax_backward(din.data(), g.data(), y.data(), rows, cols);
  Dev<float> dx(x), dg(g), dy(poison(rows * cols)), ddin(poison(rows * cols));
  cuda::softmax_forward(dy.p(), dx.p(), rows, cols);
  cuda::softmax_backward(ddin.p(), dg.p(), dy.p(), rows, cols);
  EXPECT_LE(max_rel_error(dy.get(), y), kTol);
  EXPECT_LE(max_rel_error(ddin.get(), din), kTol);
}

// Dh 8 moves the heads as float4, Dh 6 float by float. bf16: under bf16 products (the
// kernels write the products' operands in bf16), within 1e-2 of the fp32 CPU in norm.
void check_attention(i64 Dh, bool bf16 = false) {
  const i64 B = 2, H = 3, Tq = 9, Tk = 11, ld = H * Dh;
  const F q = random_floats(B * Tq * ld, 21), k = random_floats(B * Tk * ld, 22),
          v = random_floats(B * Tk * ld, 23), g = random_floats(B * Tq * ld, 24);
  const std::vector<std::int32_t> kv_len = {11, 6};
  std::vector<std::uint8_t> keep(B * H * Tq * Tk);
  cpu::dropout_mask(keep.data(), static_cast<i64>(keep.size()), 0.2f, 5, 6, 0);
  for (bool causal : {false, true})
    for (bool drop : {false, true}) {
      const float ks = drop ? 1.25f : 1.0f;
      F out(B * Tq * ld), probs(B * H * Tq * Tk), dq(q.size()), dk(k.size()), dv(v.size()),
          scratch(probs.size());
      cpu::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), kv_len.data(),
                             drop ? keep.data() : nullptr, ks, B, H, Tq, Tk, Dh, causal, 2);
      cpu::attention_backward(dq.data(), dk.data(), dv.data(), scratch.data(), g.data(),
                              probs.data(), q.data(), k.data(), v.data(),
                              drop ? keep.data() : nullptr, ks, B, H, Tq, Tk, Dh);
      Dev<float> dq_(q), dk_(k), dv_(v), dg(g), dout(poison(out.size())),
          dprobs(poison(probs.size())), ddq(poison(q.size())), ddk(poison(k.size())),
          ddv(poison(v.size())), dscratch(poison(scratch.size()));
      Dev<std::int32_t> dlen(kv_len);
      Dev<std::uint8_t> dkeep(keep);
      cuda::attention_forward(dout.p(), dprobs.p(), dq_.p(), dk_.p(), dv_.p(), dlen.p(),
                              drop ? dkeep.p() : nullptr, ks, B, H, Tq, Tk, Dh, causal, 2);
      cuda::attention_backward(ddq.p(), ddk.p(), ddv.p(), dscratch.p(), dg.p(), dprobs.p(), dq_.p(),
                               dk_.p(), dv_.p(), drop ? dkeep.p() : nullptr, ks, B, H, Tq, Tk, Dh);
      const std::string what = "Dh " + std::to_string(Dh) + " causal " + (causal ? "1" : "0") +
                               " dropout " + (drop ? "1" : "0");
      if (bf16) {
        double worst = 0;
        for (const auto& [got, ref] : {std::pair{dprobs.get(), probs},
                                       {dout.get(), out},
                                       {ddq.get(), dq},
                                       {ddk.get(), dk},
                                       {ddv.get(), dv}}) {
          EXPECT_LE(norm_rel_error(got, ref), 1e-2) << what;
          worst = std::max(worst, norm_rel_error(got, ref));
        }
        EXPECT_GT(worst, kTol) << "the operands were not rounded";
        std::printf("bf16 attention, %s: worst norm error %.3g\n", what.c_str(), worst);
        continue;
      }
      EXPECT_LE(max_rel_error(dprobs.get(), probs), kTol) << what;
      EXPECT_LE(max_rel_error(dout.get(), out), kTol) << what;
      EXPECT_LE(max_rel_error(ddq.get(), dq), kTol) << what;
      EXPECT_LE(max_rel_error(ddk.get(), dk), kTol) << what;
      EXPECT_LE(max_rel_error(ddv.get(), dv), kTol) << what;
    }
}

TEST_F(CudaKernels, AttentionForwardBackward) {
  check_attention(8);
  check_attention(6);
}

TEST_F(CudaKernels, AttentionUnderBf16Products) {
  struct Reset {
    ~Reset() { cuda::set_bf16_matmuls(false); }
  } reset;
  cuda::set_bf16_matmuls(true);
  check_attention(8, true);
  check_attention(6, true);
}

// The second shape: more rows than the gradient kernel's 512 blocks (a block owns several),
// more tokens than one chunk of ids, more columns than threads.
TEST_F(CudaKernels, EmbeddingGatherScatter) {
  for (const auto& [V, d, N] : {std::tuple<i64, i64, i64>{17, 40, 50}, {1500, 300, 700}}) {
    const F table = random_floats(V * d, 25), g = random_floats(N * d, 26);
    std::vector<std::int32_t> ids(N);
    for (i64 n = 0; n < N; ++n) ids[n] = static_cast<std::int32_t>((n * 7) % V);  // repeats
    if (N > 600) ids[600] = ids[3] = static_cast<std::int32_t>(V - 1);
    F out(N * d), dtable = table;
    cpu::embedding_forward(out.data(), ids.data(), table.data(), N, d, 2.5f);
    cpu::embedding_backward_accumulate(dtable.data(), ids.data(), g.data(), N, d, 2.5f);
    Dev<float> dt(table), dg(g), dout(poison(N * d)), ddt(table);
    Dev<std::int32_t> did(ids);
    cuda::embedding_forward(dout.p(), did.p(), dt.p(), N, d, 2.5f);
    cuda::embedding_backward_accumulate(ddt.p(), did.p(), dg.p(), N, d, 2.5f);
    EXPECT_EQ(dout.get(), out) << "V " << V;
    EXPECT_LE(max_rel_error(ddt.get(), dtable), kTol) << "V " << V;
  }
}

TEST_F(CudaKernels, CrossEntropyWithSmoothingAndIgnoreIndex) {
  const i64 N = 13, V = 1000;
  const F logits = random_floats(N * V, 27, -6, 6);
  std::vector<std::int32_t> targets(N);
  for (i64 n = 0; n < N; ++n) targets[n] = static_cast<std::int32_t>((n * 131) % V);
  targets[3] = targets[8] = -100;
  F loss(N), lse(N), dlogits(N * V);
  const double total = cpu::cross_entropy_forward(loss.data(), lse.data(), logits.data(),
                                                  targets.data(), N, V, 0.1f, -100);
  cpu::cross_entropy_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), N, V, 0.1f,
                              -100, 1.0f / 11);
  Dev<float> dl(logits), dloss(poison(N)), dlse(poison(N)), dd(poison(N * V));
  Dev<std::int32_t> dt(targets);
  const double dtotal =
      cuda::cross_entropy_forward(dloss.p(), dlse.p(), dl.p(), dt.p(), N, V, 0.1f, -100);
  cuda::cross_entropy_backward(dd.p(), dl.p(), dlse.p(), dt.p(), N, V, 0.1f, -100, 1.0f / 11);
  EXPECT_NEAR(dtotal, total, kTol * std::abs(total));
  EXPECT_LE(max_rel_error(dloss.get(), loss), kTol);
  EXPECT_LE(max_rel_error(dlse.get(), lse), kTol);
  EXPECT_LE(max_rel_error(dd.get(), dlogits, 1e-3), kTol);
}

// A rank's shard: full vocabulary 50, this rank holds columns [20, 38) padded to 20.
TEST_F(CudaKernels, VocabularyParallelShards) {
  const i64 N = 12, d = 24, V = 50, first = 20, valid = 18, V_local = 20;
  std::vector<std::int32_t> ids(N);
  for (i64 n = 0; n < N; ++n) ids[n] = static_cast<std::int32_t>((n * 13) % V);  // in and out
  const F table = random_floats(V_local * d, 60), g = random_floats(N * d, 61);
  F out(N * d), dtable = table;
  cpu::embedding_forward_shard(out.data(), ids.data(), table.data(), N, d, first, V_local, 1.5f);
  cpu::embedding_backward_shard_accumulate(dtable.data(), ids.data(), g.data(), N, d, first,
                                           V_local, 1.5f);
  Dev<float> dt(table), dg(g), dout(poison(N * d)), ddt(table);
  Dev<std::int32_t> did(ids);
  cuda::embedding_forward_shard(dout.p(), did.p(), dt.p(), N, d, first, V_local, 1.5f);
  cuda::embedding_backward_shard_accumulate(ddt.p(), did.p(), dg.p(), N, d, first, V_local, 1.5f);
  EXPECT_EQ(dout.get(), out);
  EXPECT_LE(max_rel_error(ddt.get(), dtable), kTol);

  const F logits = random_floats(N * V_local, 62, -5, 5);
  std::vector<std::int32_t> targets(N);
  for (i64 n = 0; n < N; ++n) targets[n] = static_cast<std::int32_t>((n * 7) % V);
  targets[2] = -100;
  std::vector<double> row_max(N), sums(3 * N), lse(N);
  cpu::ce_shard_max(row_max.data(), logits.data(), N, V_local, valid);
  cpu::ce_shard_sums(sums.data(), logits.data(), targets.data(), row_max.data(), N, V_local, valid,
                     first, -100);
  for (i64 n = 0; n < N; ++n) lse[n] = row_max[n] + std::log(sums[n] + 1e-3);  // any lse
  F dlogits(N * V_local);
  cpu::ce_shard_backward(dlogits.data(), logits.data(), lse.data(), targets.data(), N, V_local,
                         valid, first, V, 0.1f, -100, 0.25f);
  Dev<float> dl(logits), dd(poison(N * V_local));
  Dev<std::int32_t> dtg(targets);
  Dev<double> dmax(std::vector<double>(N, NAN)), dsums(std::vector<double>(3 * N, NAN)), dlse(lse);
  cuda::ce_shard_max(dmax.p(), dl.p(), N, V_local, valid);
  cuda::ce_shard_sums(dsums.p(), dl.p(), dtg.p(), dmax.p(), N, V_local, valid, first, -100);
  cuda::ce_shard_backward(dd.p(), dl.p(), dlse.p(), dtg.p(), N, V_local, valid, first, V, 0.1f,
                          -100, 0.25f);
  EXPECT_EQ(dmax.get(), row_max);
  const std::vector<double> got = dsums.get();
  for (i64 i = 0; i < 3 * N; ++i)
    EXPECT_NEAR(got[i], sums[i], 1e-12 * std::max(1.0, std::abs(sums[i]))) << "sums " << i;
  EXPECT_LE(max_rel_error(dd.get(), dlogits, 1e-3), kTol);
}

TEST_F(CudaKernels, DropoutMaskIsBitIdenticalToTheCpu) {
  for (std::uint64_t offset : {0ull, 3ull, (1ull << 40) + 5}) {
    const i64 n = 1001;
    std::vector<std::uint8_t> ref(n);
    cpu::dropout_mask(ref.data(), n, 0.3f, 1234, 77, offset);
    Dev<std::uint8_t> keep(std::vector<std::uint8_t>(n, 2));  // poison: neither 0 nor 1
    cuda::dropout_mask(keep.p(), n, 0.3f, 1234, 77, offset);
    EXPECT_EQ(keep.get(), ref) << "offset " << offset;
  }
  const i64 n = 777;
  const F x = random_floats(n, 28), s = random_floats(n, 29);
  std::vector<std::uint8_t> keep(n);
  cpu::dropout_mask(keep.data(), n, 0.5f, 1, 2, 0);
  F out(n), out_add(n);
  cpu::dropout_apply(out.data(), x.data(), keep.data(), 2.0f, n);
  cpu::dropout_add(out_add.data(), s.data(), x.data(), keep.data(), 2.0f, n);
  Dev<float> dx(x), ds(s), dout(poison(n)), dadd(poison(n));
  Dev<std::uint8_t> dk(keep);
  cuda::dropout_apply(dout.p(), dx.p(), dk.p(), 2.0f, n);
  cuda::dropout_add(dadd.p(), ds.p(), dx.p(), dk.p(), 2.0f, n);
  EXPECT_EQ(dout.get(), out);
  EXPECT_LE(max_rel_error(dadd.get(), out_add), kTol);
}

TEST_F(CudaKernels, AdamWSteps) {
  const i64 n = 5000;
  F p = random_floats(n, 30), m(n, 0.0f), v(n, 0.0f);
  Dev<float> dp(p), dm(m), dv(v);
  for (i64 step = 1; step <= 5; ++step) {
    const F g = random_floats(n, 31 + static_cast<std::uint32_t>(step));
    cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f,
                      step);
    Dev<float> dg(g);
    cuda::adamw_update(dp.p(), dg.p(), dm.p(), dv.p(), n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, step);
  }
  EXPECT_LE(max_rel_error(dp.get(), p), kTol);
  // m sums terms of about 0.1 (0.1 g): relative to that scale, as FMA contraction rounds
  // differently.
  EXPECT_LE(max_rel_error(dm.get(), m, 0.1), kTol);
  EXPECT_LE(max_rel_error(dv.get(), v, 1e-6), kTol);
}

TEST_F(CudaKernels, SgdSteps) {
  const i64 n = 3000;
  for (float momentum : {0.0f, 0.9f}) {
    F p = random_floats(n, 50), buf = zeros<float>(n);
    Dev<float> dp(p), dbuf(buf);
    for (int step = 0; step < 3; ++step) {
      const F g = random_floats(n, 51 + static_cast<std::uint32_t>(step));
      cpu::sgd_update(p.data(), g.data(), buf.data(), n, 0.1f, momentum, 1e-3f, step == 0);
      Dev<float> dg(g);
      cuda::sgd_update(dp.p(), dg.p(), dbuf.p(), n, 0.1f, momentum, 1e-3f, step == 0);
    }
    EXPECT_LE(max_rel_error(dp.get(), p), kTol) << "momentum " << momentum;
  }
}

TEST_F(CudaKernels, SumSquares) {
  const F x = random_floats(100003, 40);
  Dev<float> dx(x);
  const double ref = cpu::sum_squares(x.data(), static_cast<i64>(x.size()));
  EXPECT_NEAR(cuda::sum_squares(dx.p(), static_cast<i64>(x.size())), ref, 1e-9 * ref);
}

// The gradient norm's batched read-back: each tensor's sum as the CPU's (sum_squares is its
// one-tensor case), an empty tensor 0.
TEST_F(CudaKernels, SumSquaresEachMatchesCpu) {
  const F a = random_floats(100003, 41), b = random_floats(7, 42), c = random_floats(4096, 43);
  Dev<float> da(a), db(b), dc(c);
  const float* xs[] = {da.p(), db.p(), dc.p(), da.p()};
  const i64 ns[] = {static_cast<i64>(a.size()), static_cast<i64>(b.size()),
                    static_cast<i64>(c.size()), 0};
  double out[4] = {-1, -1, -1, -1};
  cuda::sum_squares_each(out, xs, ns, 4);
  const F* host[] = {&a, &b, &c};
  for (int k = 0; k < 3; ++k) {
    const double ref = cpu::sum_squares(host[k]->data(), ns[k]);
    EXPECT_NEAR(out[k], ref, 1e-9 * ref) << k;
  }
  EXPECT_EQ(out[3], 0.0);
}

TEST_F(CudaKernels, KernelsRunWithoutDeviceFaults) {
  // A fault inside any kernel above would have surfaced at a copy; this makes it explicit.
  cuda::synchronize();
}

}  // namespace
}  // namespace tr
