#include "layers/ops.h"

#include <atomic>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "layers/cpu/kernels.h"
#include "layers/op_profile.h"
#include "layers/precision.h"
#include "layers/widened.h"

#ifdef TR_HAVE_CUDA
#include "layers/cuda/kernels.h"
#endif

namespace tr::ops {

namespace {

// Runs `body` with T bound to the C++ type of a floating dtype, on the CPU.
template <typename Body>
void dispatch_float(const Tensor& t, Body&& body) {
  TR_CHECK(t.device() == Device::cpu, "this op has no CUDA kernel");
  switch (t.dtype()) {
    case DType::f32: body(float{}); return;
    case DType::f64: body(double{}); return;
    default: throw InternalError(std::string("op on a ") + dtype_name(t.dtype()) + " tensor");
  }
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
  TR_CHECK(a.shape() == b.shape(), std::string(what) + ": shapes " + shape_string(a.shape()) +
                                       " and " + shape_string(b.shape()) + " differ");
}

#ifdef TR_HAVE_CUDA
// True when the op runs on CUDA: `t` (the op's leading operand) is a CUDA tensor, then f32 (the
// CUDA set has no fp64), and every other defined operand lives there too.
bool on_cuda(const Tensor& t, std::initializer_list<const Tensor*> others = {}) {
  if (t.device() != Device::cuda) return false;
  TR_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::bf16,
           std::string("CUDA op on a ") + dtype_name(t.dtype()) +
               " tensor (the CUDA kernels are f32, bf16 through layers/widened.h)");
  for (const Tensor* o : others)
    TR_CHECK(!o->defined() || o->device() == Device::cuda, "CUDA op with an operand on the CPU");
  return true;
}
template <typename T = float>
T* dev(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
// True; throws when a defined operand is not a CUDA tensor (its pointer would fault a kernel).
bool operands_on_cuda(std::initializer_list<const Tensor*> others) {
  for (const Tensor* o : others)
    TR_CHECK(!o->defined() || o->device() == Device::cuda, "CUDA op with an operand on the CPU");
  return true;
}
bool cuda_of(const Tensor& t, DType dtype) {
  return t.defined() && t.device() == Device::cuda && t.dtype() == dtype;
}
cuda::bf16* bf(const Tensor& t) {
  return static_cast<cuda::bf16*>(t.raw());
}
cuda::Operand operand(const Tensor& t) {
  return {t.raw(), t.dtype() == DType::bf16};
}
cuda::Output output(Tensor* t) {
  return t ? cuda::Output{t->raw(), t->dtype() == DType::bf16} : cuda::Output{};
}
// A linear layer's bias gradient on CUDA, where the layer has one.
float* bias_gradient(Tensor* dbias) {
  return dbias && dbias->defined() ? dev(*dbias) : nullptr;
}
// The CUDA branch of an op: runs the statements and returns when `t` is a CUDA tensor.
#define TR_CUDA_OP(t, others, ...) \
  if (on_cuda(t, others)) {        \
    OpTimer op_timer_(__func__);   \
    __VA_ARGS__;                   \
    return;                        \
  }
// A bf16 kernel for this combination of operand dtypes (bf16 activations): runs the
// statements and returns when `cond` holds (every operand named there is a CUDA tensor); the
// `others` (parameters, masks, statistics) must then be CUDA tensors too.
#define TR_CUDA_BF16_OP(cond, others, ...)  \
  if ((cond) && operands_on_cuda(others)) { \
    OpTimer op_timer_(__func__);            \
    __VA_ARGS__;                            \
    return;                                 \
  }
#else
#define TR_CUDA_OP(t, others, ...)
#define TR_CUDA_BF16_OP(cond, others, ...)
#endif
#define TR_OPERANDS(...) \
  { __VA_ARGS__ }

std::int64_t rows_of(const Tensor& x) {
  return x.numel() / x.dim(-1);
}

Shape with_last(const Shape& s, std::int64_t last) {
  Shape r = s;
  r.back() = last;
  return r;
}

// Shapes y as linear_forward's output of x.
void shape_linear_output(Tensor& y, const Tensor& x, const Tensor& weight, DType y_dtype) {
  TR_CHECK(x.dim(-1) == weight.dim(1), "linear: input " + shape_string(x.shape()) + " vs weight " +
                                           shape_string(weight.shape()));
  ensure_shape(y, with_last(x.shape(), weight.dim(0)), y_dtype, x.device());
}

}  // namespace

void linear_forward(Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  linear_forward(y, x, weight, bias, x.dtype());
}

void linear_forward(Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    DType y_dtype) {
  const std::int64_t in = weight.dim(1), out = weight.dim(0), N = rows_of(x);
  shape_linear_output(y, x, weight, y_dtype);
  // cuBLASLt's bias epilogue adds the bias in the GEMM's own pass.
  TR_CUDA_OP(x, TR_OPERANDS(&weight, &bias, &y),
             cuda::linear_forward_mixed(output(&y), operand(x), dev(weight), dev(bias), N, in, out))
  Widened w;
  const Tensor& xw = w.in(x);
  Tensor& yw = w.out(y);
  dispatch_float(xw, [&](auto tag) {
    using T = decltype(tag);
    // With a bias, y starts as the broadcast bias and the GEMM adds the product (beta = 1):
    // one pass over y instead of BLAS's beta = 0 pass plus a bias pass.
    if (bias.defined()) cpu::bias_fill<T>(yw.data<T>(), bias.data<T>(), N, out);
    cpu::gemm<T>(false, true, N, out, in, T(1), xw.data<T>(), in, weight.data<T>(), in,
                 bias.defined() ? T(1) : T(0), yw.data<T>(), out);
  });
  w.finish();
}

void linear_relu_forward(Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias,
                         DType y_dtype) {
  const std::int64_t in = weight.dim(1), out = weight.dim(0), N = rows_of(x);
  shape_linear_output(y, x, weight, y_dtype);
  TR_CUDA_OP(x, TR_OPERANDS(&weight, &bias, &y),
             cuda::linear_forward_mixed(output(&y), operand(x), dev(weight), dev(bias), N, in, out,
                                        /*relu=*/true))
  linear_forward(y, x, weight, bias, y_dtype);
  activation_forward(y, y, Activation::relu);
}

void linear_gelu_tanh_forward(Tensor& y, Tensor& pre, const Tensor& x, const Tensor& weight,
                              const Tensor& bias, DType y_dtype) {
  const std::int64_t in = weight.dim(1), out = weight.dim(0), N = rows_of(x);
  shape_linear_output(y, x, weight, y_dtype);
  shape_linear_output(pre, x, weight, y_dtype);
  TR_CUDA_OP(x, TR_OPERANDS(&weight, &bias, &y, &pre),
             cuda::linear_gelu_tanh_forward_mixed(output(&y), output(&pre), operand(x), dev(weight),
                                                  dev(bias), N, in, out))
  linear_forward(pre, x, weight, bias, y_dtype);
  activation_forward(y, pre, Activation::gelu_tanh);
}

void linear_backward_through_gelu_tanh(Tensor& dx, Tensor& dweight, Tensor* dbias, const Tensor& dy,
                                       const Tensor& x, const Tensor& weight,
                                       const Tensor& gelu_input) {
  const std::int64_t in = weight.dim(1), out = weight.dim(0), N = rows_of(x);
  TR_CHECK(dy.dim(-1) == out && rows_of(dy) == N, "linear backward: dy shape");
  check_same_shape(gelu_input, x, "linear backward through GELU: its input vs x");
  TR_CHECK(gelu_input.dtype() == x.dtype(), "linear backward through GELU: its input's dtype");
  ensure_shape(dx, x.shape(), x.dtype(), x.device());
  TR_CUDA_OP(x, TR_OPERANDS(&weight, &dy, &dweight, &gelu_input),
             cuda::linear_backward_mixed(output(&dx), 0.0f, dev(dweight), bias_gradient(dbias),
                                         operand(dy), operand(x), dev(weight), N, in, out,
                                         operand(gelu_input)))
  linear_backward(&dx, dweight, dbias, dy, x, weight);
  activation_backward(dx, dx, gelu_input, Activation::gelu_tanh);
}

void linear_backward(Tensor* dx, Tensor& dweight, Tensor* dbias, const Tensor& dy, const Tensor& x,
                     const Tensor& weight) {
  const std::int64_t in = weight.dim(1), out = weight.dim(0), N = rows_of(x);
  TR_CHECK(dy.dim(-1) == out && rows_of(dy) == N, "linear backward: dy shape");
  if (dx) ensure_shape(*dx, x.shape(), x.dtype(), x.device());
  TR_CUDA_OP(x, TR_OPERANDS(&weight, &dy, &dweight),
             cuda::linear_backward_mixed(output(dx), 0.0f, dev(dweight), bias_gradient(dbias),
                                         operand(dy), operand(x), dev(weight), N, in, out))
  Widened w;
  const Tensor &xw = w.in(x), &dyw = w.in(dy);
  Tensor* dxw = dx ? &w.out(*dx) : nullptr;
  dispatch_float(xw, [&](auto tag) {
    using T = decltype(tag);
    if (dxw)
      cpu::gemm<T>(false, false, N, in, out, T(1), dyw.data<T>(), out, weight.data<T>(), in, T(0),
                   dxw->data<T>(), in);
    cpu::gemm<T>(true, false, out, in, N, T(1), dyw.data<T>(), out, xw.data<T>(), in, T(1),
                 dweight.data<T>(), in);
    if (dbias && dbias->defined())
      cpu::bias_backward_accumulate<T>(dbias->data<T>(), dyw.data<T>(), N, out);
  });
  w.finish();
}

void linear_backward_accumulate(Tensor& dx_sum, Tensor& dweight, Tensor* dbias, const Tensor& dy,
                                const Tensor& x, const Tensor& weight) {
  const std::int64_t in = weight.dim(1), out = weight.dim(0), N = rows_of(x);
  TR_CHECK(dy.dim(-1) == out && rows_of(dy) == N, "linear backward: dy shape");
  check_same_shape(dx_sum, x, "linear backward_accumulate: dx_sum vs x");
  TR_CUDA_OP(x, TR_OPERANDS(&weight, &dy, &dweight, &dx_sum),
             cuda::linear_backward_mixed(output(&dx_sum), 1.0f, dev(dweight), bias_gradient(dbias),
                                         operand(dy), operand(x), dev(weight), N, in, out))
  Widened w;
  const Tensor &xw = w.in(x), &dyw = w.in(dy);
  Tensor& sumw = w.out(dx_sum, /*accumulating=*/true);
  dispatch_float(xw, [&](auto tag) {
    using T = decltype(tag);
    cpu::gemm<T>(false, false, N, in, out, T(1), dyw.data<T>(), out, weight.data<T>(), in, T(1),
                 sumw.data<T>(), in);
    cpu::gemm<T>(true, false, out, in, N, T(1), dyw.data<T>(), out, xw.data<T>(), in, T(1),
                 dweight.data<T>(), in);
    if (dbias && dbias->defined())
      cpu::bias_backward_accumulate<T>(dbias->data<T>(), dyw.data<T>(), N, out);
  });
  w.finish();
}

void layernorm_forward(Tensor& y, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, double eps) {
  layernorm_forward(y, mean, rstd, x, weight, bias, eps, x.dtype());
}

void layernorm_forward(Tensor& y, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, double eps, DType y_dtype) {
  const std::int64_t C = x.dim(-1), N = rows_of(x);
  ensure_shape(y, x.shape(), y_dtype, x.device());
  ensure_shape(mean, {N}, wide_dtype(x.dtype()), x.device());
  ensure_shape(rstd, {N}, wide_dtype(x.dtype()), x.device());
  TR_CUDA_BF16_OP(cuda_of(x, DType::f32) && cuda_of(y, DType::bf16), TR_OPERANDS(&weight, &bias),
                  cuda::layernorm_forward(bf(y), dev(mean), dev(rstd), dev(x), dev(weight),
                                          dev(bias), N, C, static_cast<float>(eps)))
  Widened w;
  const Tensor& xw = w.in(x);
  Tensor& yw = w.out(y);
  TR_CUDA_OP(xw, TR_OPERANDS(&weight, &bias),
             cuda::layernorm_forward(dev(yw), dev(mean), dev(rstd), dev(xw), dev(weight), dev(bias),
                                     N, C, static_cast<float>(eps));
             w.finish())
  dispatch_float(xw, [&](auto tag) {
    using T = decltype(tag);
    cpu::layernorm_forward<T>(yw.data<T>(), mean.data<T>(), rstd.data<T>(), xw.data<T>(),
                              weight.data<T>(), bias.data<T>(), N, C, T(eps));
  });
  w.finish();
}

void layernorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dy,
                        const Tensor& x, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd, const Tensor* residual) {
  check_same_shape(dy, x, "layernorm backward");
  if (residual != nullptr) check_same_shape(*residual, x, "layernorm backward residual");
  const std::int64_t C = x.dim(-1), N = rows_of(x);
  // dx must not share the residual's buffer: rows are read and written in the same pass, which
  // is fine, but a caller's view of the residual would silently change.
  ensure_shape(dx, x.shape(), x.dtype(), x.device());
  TR_CUDA_BF16_OP(
      cuda_of(x, DType::f32) && cuda_of(dy, DType::bf16) &&
          (!residual || cuda_of(*residual, DType::f32)),
      TR_OPERANDS(&weight, &mean, &rstd, &dweight, &dbias),
      cuda::layernorm_backward(dev(dx), dev(dweight), dev(dbias), bf(dy), dev(x), dev(weight),
                               dev(mean), dev(rstd), N, C, residual ? dev(*residual) : nullptr))
  Widened w;
  const Tensor &xw = w.in(x), &dyw = w.in(dy);
  const Tensor* resw = residual ? &w.in(*residual) : nullptr;
  Tensor& dxw = w.out(dx);
  TR_CUDA_OP(
      xw, TR_OPERANDS(&dyw, &weight, &mean, &rstd, &dweight, &dbias),
      cuda::layernorm_backward(dev(dxw), dev(dweight), dev(dbias), dev(dyw), dev(xw), dev(weight),
                               dev(mean), dev(rstd), N, C, resw ? dev(*resw) : nullptr);
      w.finish())
  dispatch_float(xw, [&](auto tag) {
    using T = decltype(tag);
    cpu::layernorm_backward<T>(dxw.data<T>(), dweight.data<T>(), dbias.data<T>(), dyw.data<T>(),
                               xw.data<T>(), weight.data<T>(), mean.data<T>(), rstd.data<T>(), N, C,
                               resw ? resw->data<T>() : nullptr);
  });
  w.finish();
}

void activation_forward(Tensor& y, const Tensor& x, Activation act) {
  ensure_shape(y, x.shape(), x.dtype(), x.device());
#ifdef TR_HAVE_CUDA
  const auto cuda_forward = [&](auto* out, const auto* in) {
    if (act == Activation::gelu)
      cuda::gelu_forward(out, in, x.numel());
    else if (act == Activation::gelu_tanh)
      cuda::gelu_tanh_forward(out, in, x.numel());
    else
      cuda::relu_forward(out, in, x.numel());
  };
#endif
  TR_CUDA_BF16_OP(cuda_of(x, DType::bf16), TR_OPERANDS(), cuda_forward(bf(y), bf(x)))
  Widened w;
  const Tensor& xw = w.in(x);
  Tensor& yw = w.out(y);
  TR_CUDA_OP(xw, TR_OPERANDS(), cuda_forward(dev(yw), dev(xw)); w.finish())
  dispatch_float(xw, [&](auto tag) {
    using T = decltype(tag);
    if (act == Activation::gelu)
      cpu::gelu_forward<T>(yw.data<T>(), xw.data<T>(), x.numel());
    else if (act == Activation::gelu_tanh)
      cpu::gelu_tanh_forward<T>(yw.data<T>(), xw.data<T>(), x.numel());
    else
      cpu::relu_forward<T>(yw.data<T>(), xw.data<T>(), x.numel());
  });
  w.finish();
}

void activation_backward(Tensor& dx, const Tensor& dy, const Tensor& x, Activation act,
                         const Tensor& y) {
  check_same_shape(dy, x, "activation backward");
  if (y.defined()) check_same_shape(y, x, "activation backward: forward output");
  ensure_shape(dx, x.shape(), x.dtype(), x.device());
#ifdef TR_HAVE_CUDA
  const auto cuda_backward = [&](auto* din, const auto* dout, const auto* in) {
    if (act == Activation::gelu)
      cuda::gelu_backward(din, dout, in, x.numel());
    else if (act == Activation::gelu_tanh)
      cuda::gelu_tanh_backward(din, dout, in, x.numel());
    else
      cuda::relu_backward(din, dout, in, x.numel());
  };
#endif
  TR_CUDA_BF16_OP(cuda_of(x, DType::bf16) && cuda_of(dy, DType::bf16), TR_OPERANDS(),
                  cuda_backward(bf(dx), bf(dy), bf(x)))
  Widened w;
  const Tensor &xw = w.in(x), &dyw = w.in(dy);
  // A rounded forward output is no exact GELU of x: the backward evaluates erf itself then.
  const Tensor& yw = y.dtype() == DType::bf16 ? Tensor() : y;
  Tensor& dxw = w.out(dx);
  TR_CUDA_OP(xw, TR_OPERANDS(&dyw), cuda_backward(dev(dxw), dev(dyw), dev(xw)); w.finish())
  dispatch_float(xw, [&](auto tag) {
    using T = decltype(tag);
    if (act == Activation::gelu)
      cpu::gelu_backward<T>(dxw.data<T>(), dyw.data<T>(), xw.data<T>(), x.numel(),
                            yw.defined() ? yw.data<T>() : nullptr);
    else if (act == Activation::gelu_tanh)
      cpu::gelu_tanh_backward<T>(dxw.data<T>(), dyw.data<T>(), xw.data<T>(), x.numel());
    else
      cpu::relu_backward<T>(dxw.data<T>(), dyw.data<T>(), xw.data<T>(), x.numel());
  });
  w.finish();
}

void add(Tensor& out, const Tensor& a, const Tensor& b) {
  check_same_shape(a, b, "add");
  if (!out.same_buffer(a) && !out.same_buffer(b))
    ensure_shape(out, a.shape(), promoted_dtype(a, b), a.device());
  TR_CUDA_BF16_OP(cuda_of(out, DType::f32) && cuda_of(a, DType::f32) && cuda_of(b, DType::bf16),
                  TR_OPERANDS(), cuda::add(dev(out), dev(a), bf(b), a.numel()))
  TR_CUDA_BF16_OP(cuda_of(out, DType::f32) && cuda_of(a, DType::bf16) && cuda_of(b, DType::f32),
                  TR_OPERANDS(), cuda::add(dev(out), dev(b), bf(a), a.numel()))
  Widened w;
  const Tensor &aw = w.in(a), &bw = w.in(b);
  Tensor& outw = w.out(out);
  TR_CUDA_OP(aw, TR_OPERANDS(&bw), cuda::add(dev(outw), dev(aw), dev(bw), a.numel()); w.finish())
  dispatch_float(aw, [&](auto tag) {
    using T = decltype(tag);
    cpu::add<T>(outw.data<T>(), aw.data<T>(), bw.data<T>(), a.numel());
  });
  w.finish();
}

void bias_add_inplace(Tensor& y, const Tensor& bias) {
  const std::int64_t C = y.dim(-1);
  TR_CHECK(bias.numel() == C && bias.dtype() == wide_dtype(y.dtype()), "bias_add: bias shape");
  Widened w;
  Tensor& yw = w.out(y, /*accumulating=*/true);
  TR_CUDA_OP(yw, TR_OPERANDS(&bias), cuda::bias_add(dev(yw), dev(yw), dev(bias), rows_of(y), C);
             w.finish())
  dispatch_float(yw, [&](auto tag) {
    using T = decltype(tag);
    cpu::bias_add<T>(yw.data<T>(), yw.data<T>(), bias.data<T>(), rows_of(y), C);
  });
  w.finish();
}

void add_accumulate(Tensor& out, const Tensor& a) {
  check_same_shape(out, a, "add_accumulate");
  Widened w;
  const Tensor& aw = w.in(a);
  Tensor& outw = w.out(out, /*accumulating=*/true);
  TR_CUDA_OP(aw, TR_OPERANDS(&outw), cuda::add_accumulate(dev(outw), dev(aw), a.numel());
             w.finish())
  dispatch_float(aw, [&](auto tag) {
    using T = decltype(tag);
    cpu::add_accumulate<T>(outw.data<T>(), aw.data<T>(), a.numel());
  });
  w.finish();
}

void copy(Tensor& out, const Tensor& in) {
  ensure_shape(out, in.shape(), in.dtype(), in.device());
  out.copy_from(in);
}

void attention_forward(Tensor& out, Tensor& probs, const Tensor& q, const Tensor& k,
                       const Tensor& v, const Tensor& kv_len, const Tensor& keep_mask,
                       double keep_scale, std::int64_t heads, bool causal, std::int64_t q_offset) {
  const std::int64_t B = q.dim(0), Tq = q.dim(1), Tk = k.dim(1), d = q.dim(2);
  TR_CHECK(d % heads == 0, "attention: heads must divide the projection width");
  TR_CHECK(k.shape() == v.shape() && k.dim(0) == B && k.dim(2) == d, "attention: k/v shapes");
  const std::int64_t Dh = d / heads;
  ensure_shape(out, q.shape(), q.dtype(), q.device());
  ensure_shape(probs, {B, heads, Tq, Tk}, wide_dtype(q.dtype()), q.device());
  const std::int32_t* lens = kv_len.defined() ? kv_len.data<std::int32_t>() : nullptr;
  const std::uint8_t* keep = keep_mask.defined() ? keep_mask.data<std::uint8_t>() : nullptr;
  TR_CUDA_BF16_OP(cuda_of(q, DType::bf16) && cuda_of(k, DType::bf16) && cuda_of(v, DType::bf16),
                  TR_OPERANDS(&kv_len, &keep_mask),
                  cuda::attention_forward(bf(out), dev(probs), bf(q), bf(k), bf(v), lens, keep,
                                          static_cast<float>(keep_scale), B, heads, Tq, Tk, Dh,
                                          causal, q_offset))
  Widened w;
  const Tensor &qw = w.in(q), &kw = w.in(k), &vw = w.in(v);
  Tensor& outw = w.out(out);
  TR_CUDA_OP(qw, TR_OPERANDS(&kw, &vw, &kv_len, &keep_mask),
             cuda::attention_forward(dev(outw), dev(probs), dev(qw), dev(kw), dev(vw), lens, keep,
                                     static_cast<float>(keep_scale), B, heads, Tq, Tk, Dh, causal,
                                     q_offset);
             w.finish())
  dispatch_float(qw, [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_forward<T>(outw.data<T>(), probs.data<T>(), qw.data<T>(), kw.data<T>(),
                              vw.data<T>(), lens, keep, T(keep_scale), B, heads, Tq, Tk, Dh, causal,
                              q_offset);
  });
  w.finish();
}

void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, Tensor& scratch, const Tensor& dout,
                        const Tensor& probs, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& keep_mask, double keep_scale, std::int64_t heads) {
  const std::int64_t B = q.dim(0), Tq = q.dim(1), Tk = k.dim(1), d = q.dim(2);
  const std::int64_t Dh = d / heads;
  ensure_shape(dq, q.shape(), q.dtype(), q.device());
  ensure_shape(dk, k.shape(), k.dtype(), k.device());
  ensure_shape(dv, v.shape(), v.dtype(), v.device());
  ensure_shape(scratch, {B, heads, Tq, Tk}, wide_dtype(q.dtype()), q.device());
  const std::uint8_t* keep = keep_mask.defined() ? keep_mask.data<std::uint8_t>() : nullptr;
  TR_CUDA_BF16_OP(cuda_of(q, DType::bf16) && cuda_of(k, DType::bf16) && cuda_of(v, DType::bf16) &&
                      cuda_of(dout, DType::bf16),
                  TR_OPERANDS(&probs, &keep_mask),
                  cuda::attention_backward(bf(dq), bf(dk), bf(dv), dev(scratch), bf(dout),
                                           dev(probs), bf(q), bf(k), bf(v), keep,
                                           static_cast<float>(keep_scale), B, heads, Tq, Tk, Dh))
  Widened w;
  const Tensor &qw = w.in(q), &kw = w.in(k), &vw = w.in(v), &doutw = w.in(dout);
  Tensor &dqw = w.out(dq), &dkw = w.out(dk), &dvw = w.out(dv);
  TR_CUDA_OP(qw, TR_OPERANDS(&kw, &vw, &doutw, &probs, &keep_mask),
             cuda::attention_backward(dev(dqw), dev(dkw), dev(dvw), dev(scratch), dev(doutw),
                                      dev(probs), dev(qw), dev(kw), dev(vw), keep,
                                      static_cast<float>(keep_scale), B, heads, Tq, Tk, Dh);
             w.finish())
  dispatch_float(qw, [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_backward<T>(dqw.data<T>(), dkw.data<T>(), dvw.data<T>(), scratch.data<T>(),
                               doutw.data<T>(), probs.data<T>(), qw.data<T>(), kw.data<T>(),
                               vw.data<T>(), keep, T(keep_scale), B, heads, Tq, Tk, Dh);
  });
  w.finish();
}

namespace {
struct AttentionDims {
  std::int64_t B, Tq, Tk, Dh;
};
AttentionDims attention_dims(const Tensor& q, const Tensor& k, const Tensor& v,
                             std::int64_t heads) {
  const std::int64_t d = q.dim(2);
  TR_CHECK(q.ndim() == 3 && heads > 0 && d % heads == 0,
           "attention: heads must divide the projection width");
  TR_CHECK(k.shape() == v.shape() && k.dim(0) == q.dim(0) && k.dim(2) == d,
           "attention: k/v shapes");
  return {q.dim(0), q.dim(1), k.dim(1), d / heads};
}
}  // namespace

namespace {
std::atomic<bool> g_flash_on_cpu{false};
}  // namespace

void set_flash_attention_on_cpu(bool on) {
  g_flash_on_cpu = on;
}

bool use_flash_attention(const Tensor& q, const Tensor& k, std::int64_t heads) {
  if (q.device() == Device::cpu) return g_flash_on_cpu && k.device() == Device::cpu;
#ifdef TR_HAVE_CUDA
  // TR_FLASH_ATTENTION=0 keeps the GPU's attention on the materialised kernels: a
  // comparison and fallback switch for a GPU host, read once.
  static const bool flash_allowed = [] {
    const char* env = std::getenv("TR_FLASH_ATTENTION");
    return env == nullptr || std::string(env) != "0";
  }();
  const bool bf16 = cuda_of(q, DType::bf16) && cuda_of(k, DType::bf16);
  const bool same_dtype = bf16 || (cuda_of(q, DType::f32) && cuda_of(k, DType::f32));
  return flash_allowed && same_dtype && heads > 0 && q.dim(2) % heads == 0 &&
         cuda::flash_attention_supported(bf16, q.dim(2) / heads);
#else
  (void)q, (void)k, (void)heads;
  return false;
#endif
}

namespace {

// The flash forward's outputs shaped for q: out like q, lse [B, heads, Tq] (f32 for bf16 q).
void shape_flash_outputs(Tensor& out, Tensor& lse, const Tensor& q, std::int64_t B,
                         std::int64_t heads, std::int64_t Tq) {
  ensure_shape(out, q.shape(), q.dtype(), q.device());
  ensure_shape(lse, {B, heads, Tq}, wide_dtype(q.dtype()), q.device());
}

// The flash backward's inputs checked against q, and its gradients shaped like q, k and v.
void shape_flash_gradients(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout,
                           const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                           const Tensor& v, std::int64_t B, std::int64_t heads, std::int64_t Tq) {
  check_same_shape(dout, q, "flash attention backward: dout");
  check_same_shape(out, q, "flash attention backward: out");
  TR_CHECK(lse.shape() == Shape({B, heads, Tq}), "flash attention backward: lse shape");
  ensure_shape(dq, q.shape(), q.dtype(), q.device());
  ensure_shape(dk, k.shape(), k.dtype(), k.device());
  ensure_shape(dv, v.shape(), v.dtype(), v.device());
}

}  // namespace

void flash_attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& kv_len, const Tensor& keep_mask,
                             double keep_scale, std::int64_t heads, bool causal,
                             std::int64_t q_offset) {
  const auto [B, Tq, Tk, Dh] = attention_dims(q, k, v, heads);
  shape_flash_outputs(out, lse, q, B, heads, Tq);
  const std::int32_t* lens = kv_len.defined() ? kv_len.data<std::int32_t>() : nullptr;
  const std::uint8_t* keep = keep_mask.defined() ? keep_mask.data<std::uint8_t>() : nullptr;
  TR_CUDA_BF16_OP(
      cuda_of(q, DType::bf16) && cuda_of(k, DType::bf16) && cuda_of(v, DType::bf16),
      TR_OPERANDS(&lse, &kv_len, &keep_mask),
      if (!cuda::cudnn_attention_forward(bf(out), dev(lse), bf(q), bf(k), bf(v), lens, keep,
                                         static_cast<float>(keep_scale), B, heads, Tq, Tk, Dh,
                                         causal, q_offset)) {
        cuda::flash_attention_forward(bf(out), dev(lse), bf(q), bf(k), bf(v), lens, keep,
                                      static_cast<float>(keep_scale), B, heads, Tq, Tk, Dh, causal,
                                      q_offset);
      })
  TR_CUDA_BF16_OP(cuda_of(q, DType::f32) && cuda_of(k, DType::f32) && cuda_of(v, DType::f32),
                  TR_OPERANDS(&lse, &kv_len, &keep_mask),
                  cuda::flash_attention_forward(dev(out), dev(lse), dev(q), dev(k), dev(v), lens,
                                                keep, static_cast<float>(keep_scale), B, heads, Tq,
                                                Tk, Dh, causal, q_offset))
  TR_CHECK(q.device() == Device::cpu,
           "flash attention on CUDA takes q/k/v of one dtype, f32 or bf16");
  Widened w;
  const Tensor &qw = w.in(q), &kw = w.in(k), &vw = w.in(v);
  Tensor& outw = w.out(out);
  dispatch_float(qw, [&](auto tag) {
    using T = decltype(tag);
    cpu::flash_attention_forward<T>(outw.data<T>(), lse.data<T>(), qw.data<T>(), kw.data<T>(),
                                    vw.data<T>(), lens, keep, T(keep_scale), B, heads, Tq, Tk, Dh,
                                    causal, q_offset);
  });
  w.finish();
}

namespace {
std::atomic<bool> g_fused_attention_dropout{false};
}  // namespace

void set_fused_attention_dropout(bool on) {
  g_fused_attention_dropout = on;
}

bool fused_attention_dropout() {
  return g_fused_attention_dropout;
}

bool flash_attention_forward_drawn_dropout(Tensor& out, Tensor& lse, const Tensor& q,
                                           const Tensor& k, const Tensor& v, const Tensor& kv_len,
                                           double keep_probability, std::uint64_t seed,
                                           std::int64_t heads, bool causal) {
#ifdef TR_HAVE_CUDA
  const bool bf16_on_cuda = cuda_of(q, DType::bf16) && cuda_of(k, DType::bf16) &&
                            cuda_of(v, DType::bf16) &&
                            (!kv_len.defined() || kv_len.device() == Device::cuda);
  if (!bf16_on_cuda) return false;
  const auto [B, Tq, Tk, Dh] = attention_dims(q, k, v, heads);
  shape_flash_outputs(out, lse, q, B, heads, Tq);
  const std::int32_t* lens = kv_len.defined() ? kv_len.data<std::int32_t>() : nullptr;
  OpTimer op_timer_(__func__);
  return cuda::cudnn_attention_forward_drawn_dropout(bf(out), dev(lse), bf(q), bf(k), bf(v), lens,
                                                     static_cast<float>(keep_probability), seed, B,
                                                     heads, Tq, Tk, Dh, causal);
#else
  (void)out, (void)lse, (void)q, (void)k, (void)v, (void)kv_len, (void)keep_probability, (void)seed,
      (void)heads, (void)causal;
  return false;
#endif
}

void flash_attention_backward_drawn_dropout(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout,
                                            const Tensor& out, const Tensor& lse, const Tensor& q,
                                            const Tensor& k, const Tensor& v, const Tensor& kv_len,
                                            double keep_probability, std::uint64_t seed,
                                            std::int64_t heads, bool causal) {
#ifdef TR_HAVE_CUDA
  const auto [B, Tq, Tk, Dh] = attention_dims(q, k, v, heads);
  shape_flash_gradients(dq, dk, dv, dout, out, lse, q, k, v, B, heads, Tq);
  const std::int32_t* lens = kv_len.defined() ? kv_len.data<std::int32_t>() : nullptr;
  OpTimer op_timer_(__func__);
  cuda::cudnn_attention_backward_drawn_dropout(
      bf(dq), bf(dk), bf(dv), bf(dout), bf(out), dev(lse), bf(q), bf(k), bf(v), lens,
      static_cast<float>(keep_probability), seed, B, heads, Tq, Tk, Dh, causal);
#else
  (void)dq, (void)dk, (void)dv, (void)dout, (void)out, (void)lse, (void)q, (void)k, (void)v,
      (void)kv_len, (void)keep_probability, (void)seed, (void)heads, (void)causal;
  throw InternalError("attention backward with drawn dropout: this build has no CUDA backend");
#endif
}

void flash_attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout,
                              const Tensor& out, const Tensor& lse, const Tensor& q,
                              const Tensor& k, const Tensor& v, const Tensor& kv_len,
                              const Tensor& keep_mask, double keep_scale, std::int64_t heads,
                              bool causal, std::int64_t q_offset) {
  const auto [B, Tq, Tk, Dh] = attention_dims(q, k, v, heads);
  shape_flash_gradients(dq, dk, dv, dout, out, lse, q, k, v, B, heads, Tq);
  const std::int32_t* lens = kv_len.defined() ? kv_len.data<std::int32_t>() : nullptr;
  const std::uint8_t* keep = keep_mask.defined() ? keep_mask.data<std::uint8_t>() : nullptr;
  TR_CUDA_BF16_OP(
      cuda_of(q, DType::bf16) && cuda_of(k, DType::bf16) && cuda_of(v, DType::bf16) &&
          cuda_of(dout, DType::bf16) && cuda_of(out, DType::bf16),
      TR_OPERANDS(&lse, &kv_len, &keep_mask),
      if (!cuda::cudnn_attention_backward(
              bf(dq), bf(dk), bf(dv), bf(dout), bf(out), dev(lse), bf(q), bf(k), bf(v), lens, keep,
              static_cast<float>(keep_scale), B, heads, Tq, Tk, Dh, causal, q_offset)) {
        cuda::flash_attention_backward(bf(dq), bf(dk), bf(dv), bf(dout), bf(out), dev(lse), bf(q),
                                       bf(k), bf(v), lens, keep, static_cast<float>(keep_scale), B,
                                       heads, Tq, Tk, Dh, causal, q_offset);
      })
  TR_CUDA_BF16_OP(cuda_of(q, DType::f32) && cuda_of(k, DType::f32) && cuda_of(v, DType::f32) &&
                      cuda_of(dout, DType::f32) && cuda_of(out, DType::f32),
                  TR_OPERANDS(&lse, &kv_len, &keep_mask),
                  cuda::flash_attention_backward(dev(dq), dev(dk), dev(dv), dev(dout), dev(out),
                                                 dev(lse), dev(q), dev(k), dev(v), lens, keep,
                                                 static_cast<float>(keep_scale), B, heads, Tq, Tk,
                                                 Dh, causal, q_offset))
  TR_CHECK(q.device() == Device::cpu,
           "flash attention on CUDA takes q/k/v/out/dout of one dtype, f32 or bf16");
  Widened w;
  const Tensor &qw = w.in(q), &kw = w.in(k), &vw = w.in(v), &doutw = w.in(dout), &outw = w.in(out);
  Tensor &dqw = w.out(dq), &dkw = w.out(dk), &dvw = w.out(dv);
  dispatch_float(qw, [&](auto tag) {
    using T = decltype(tag);
    cpu::flash_attention_backward<T>(dqw.data<T>(), dkw.data<T>(), dvw.data<T>(), doutw.data<T>(),
                                     outw.data<T>(), lse.data<T>(), qw.data<T>(), kw.data<T>(),
                                     vw.data<T>(), lens, keep, T(keep_scale), B, heads, Tq, Tk, Dh,
                                     causal, q_offset);
  });
  w.finish();
}

void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& table, double scale) {
  const std::int64_t d = table.dim(1);
  Shape shape = ids.shape();
  shape.push_back(d);
  ensure_shape(out, shape, table.dtype(), table.device());
  TR_CUDA_OP(table, TR_OPERANDS(&ids),
             cuda::embedding_forward(dev(out), dev<std::int32_t>(ids), dev(table), ids.numel(), d,
                                     static_cast<float>(scale)))
  dispatch_float(table, [&](auto tag) {
    using T = decltype(tag);
    cpu::embedding_forward<T>(out.data<T>(), ids.data<std::int32_t>(), table.data<T>(), ids.numel(),
                              d, T(scale));
  });
}

void embedding_backward_accumulate(Tensor& dtable, const Tensor& ids, const Tensor& dout,
                                   double scale) {
  const std::int64_t d = dtable.dim(1);
  TR_CHECK(dout.numel() == ids.numel() * d, "embedding backward: dout shape");
  Widened w;
  const Tensor& doutw = w.in(dout);
  TR_CUDA_OP(dtable, TR_OPERANDS(&ids, &doutw),
             cuda::embedding_backward_accumulate(dev(dtable), dev<std::int32_t>(ids), dev(doutw),
                                                 ids.numel(), d, static_cast<float>(scale)))
  dispatch_float(dtable, [&](auto tag) {
    using T = decltype(tag);
    cpu::embedding_backward_accumulate<T>(dtable.data<T>(), ids.data<std::int32_t>(),
                                          doutw.data<T>(), ids.numel(), d, T(scale));
  });
}

void embedding_forward_shard(Tensor& out, const Tensor& ids, const Tensor& table, double scale,
                             std::int64_t first) {
  const std::int64_t d = table.dim(1);
  Shape shape = ids.shape();
  shape.push_back(d);
  ensure_shape(out, shape, table.dtype(), table.device());
  TR_CUDA_OP(
      table, TR_OPERANDS(&ids),
      cuda::embedding_forward_shard(dev(out), dev<std::int32_t>(ids), dev(table), ids.numel(), d,
                                    first, table.dim(0), static_cast<float>(scale)))
  dispatch_float(table, [&](auto tag) {
    using T = decltype(tag);
    cpu::embedding_forward_shard<T>(out.data<T>(), ids.data<std::int32_t>(), table.data<T>(),
                                    ids.numel(), d, first, table.dim(0), T(scale));
  });
}

void embedding_backward_shard_accumulate(Tensor& dtable, const Tensor& ids, const Tensor& dout,
                                         double scale, std::int64_t first) {
  const std::int64_t d = dtable.dim(1);
  TR_CHECK(dout.numel() == ids.numel() * d, "embedding backward: dout shape");
  Widened w;
  const Tensor& doutw = w.in(dout);
  TR_CUDA_OP(dtable, TR_OPERANDS(&ids, &doutw),
             cuda::embedding_backward_shard_accumulate(dev(dtable), dev<std::int32_t>(ids),
                                                       dev(doutw), ids.numel(), d, first,
                                                       dtable.dim(0), static_cast<float>(scale)))
  dispatch_float(dtable, [&](auto tag) {
    using T = decltype(tag);
    cpu::embedding_backward_shard_accumulate<T>(dtable.data<T>(), ids.data<std::int32_t>(),
                                                doutw.data<T>(), ids.numel(), d, first,
                                                dtable.dim(0), T(scale));
  });
}

void ce_shard_max(Tensor& row_max, const Tensor& logits, std::int64_t valid) {
  const std::int64_t V = logits.dim(-1), N = rows_of(logits);
  TR_CHECK(valid >= 0 && valid <= V, "ce_shard_max: valid columns");
  ensure_shape(row_max, {N}, DType::f64, logits.device());
  TR_CUDA_OP(logits, TR_OPERANDS(),
             cuda::ce_shard_max(dev<double>(row_max), dev(logits), N, V, valid))
  dispatch_float(logits, [&](auto tag) {
    using T = decltype(tag);
    cpu::ce_shard_max<T>(row_max.data<double>(), logits.data<T>(), N, V, valid);
  });
}

void ce_shard_sums(Tensor& sums, const Tensor& logits, const Tensor& targets, const Tensor& row_max,
                   std::int64_t valid, std::int64_t first, std::int32_t ignore_index) {
  const std::int64_t V = logits.dim(-1), N = rows_of(logits);
  TR_CHECK(targets.numel() == N && row_max.numel() == N, "ce_shard_sums: rows");
  ensure_shape(sums, {3, N}, DType::f64, logits.device());
  TR_CUDA_OP(logits, TR_OPERANDS(&targets, &row_max),
             cuda::ce_shard_sums(dev<double>(sums), dev(logits), dev<std::int32_t>(targets),
                                 dev<double>(row_max), N, V, valid, first, ignore_index))
  dispatch_float(logits, [&](auto tag) {
    using T = decltype(tag);
    cpu::ce_shard_sums<T>(sums.data<double>(), logits.data<T>(), targets.data<std::int32_t>(),
                          row_max.data<double>(), N, V, valid, first, ignore_index);
  });
}

void ce_shard_backward(Tensor& dlogits, const Tensor& logits, const Tensor& logsumexp,
                       const Tensor& targets, std::int64_t valid, std::int64_t first,
                       std::int64_t vocab, double label_smoothing, std::int32_t ignore_index,
                       double scale) {
  const std::int64_t V = logits.dim(-1), N = rows_of(logits);
  ensure_shape(dlogits, logits.shape(), logits.dtype(), logits.device());
  TR_CUDA_OP(logits, TR_OPERANDS(&logsumexp, &targets),
             cuda::ce_shard_backward(dev(dlogits), dev(logits), dev<double>(logsumexp),
                                     dev<std::int32_t>(targets), N, V, valid, first, vocab,
                                     static_cast<float>(label_smoothing), ignore_index,
                                     static_cast<float>(scale)))
  dispatch_float(logits, [&](auto tag) {
    using T = decltype(tag);
    cpu::ce_shard_backward<T>(dlogits.data<T>(), logits.data<T>(), logsumexp.data<double>(),
                              targets.data<std::int32_t>(), N, V, valid, first, vocab,
                              T(label_smoothing), ignore_index, T(scale));
  });
}

double cross_entropy_forward(Tensor& logsumexp, const Tensor& logits, const Tensor& targets,
                             double label_smoothing, std::int32_t ignore_index) {
  const std::int64_t V = logits.dim(-1), N = rows_of(logits);
  TR_CHECK(targets.numel() == N, "cross entropy: targets vs logits rows");
  ensure_shape(logsumexp, {N}, logits.dtype(), logits.device());
  double total = 0;
#ifdef TR_HAVE_CUDA
  if (on_cuda(logits, {&targets})) {
    Tensor per_row;
    ensure_shape(per_row, {N}, logits.dtype(), logits.device());
    return cuda::cross_entropy_forward(dev(per_row), dev(logsumexp), dev(logits),
                                       dev<std::int32_t>(targets), N, V,
                                       static_cast<float>(label_smoothing), ignore_index);
  }
#endif
  dispatch_float(logits, [&](auto tag) {
    using T = decltype(tag);
    Tensor per_row;  // pooled: no system allocation once warm
    ensure_shape(per_row, {N}, logits.dtype(), logits.device());
    total = cpu::cross_entropy_forward<T>(per_row.data<T>(), logsumexp.data<T>(), logits.data<T>(),
                                          targets.data<std::int32_t>(), N, V, T(label_smoothing),
                                          ignore_index);
  });
  return total;
}

void cross_entropy_backward(Tensor& dlogits, const Tensor& logits, const Tensor& logsumexp,
                            const Tensor& targets, double label_smoothing,
                            std::int32_t ignore_index, double scale) {
  const std::int64_t V = logits.dim(-1), N = rows_of(logits);
  ensure_shape(dlogits, logits.shape(), logits.dtype(), logits.device());
  TR_CUDA_OP(logits, TR_OPERANDS(&logsumexp, &targets),
             cuda::cross_entropy_backward(
                 dev(dlogits), dev(logits), dev(logsumexp), dev<std::int32_t>(targets), N, V,
                 static_cast<float>(label_smoothing), ignore_index, static_cast<float>(scale)))
  dispatch_float(logits, [&](auto tag) {
    using T = decltype(tag);
    cpu::cross_entropy_backward<T>(dlogits.data<T>(), logits.data<T>(), logsumexp.data<T>(),
                                   targets.data<std::int32_t>(), N, V, T(label_smoothing),
                                   ignore_index, T(scale));
  });
}

void argmax_rows(Tensor& out, const Tensor& x) {
  const std::int64_t V = x.dim(-1), N = rows_of(x);
  TR_CHECK(V > 0, "argmax_rows: empty rows");
  ensure_shape(out, {N}, DType::i32, x.device());
  TR_CUDA_OP(x, {}, TR_CHECK(x.dtype() == DType::f32, "argmax_rows on CUDA takes f32 rows");
             cuda::argmax_rows(dev<std::int32_t>(out), dev(x), N, V))
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    cpu::argmax_rows<T>(out.data<std::int32_t>(), x.data<T>(), N, V);
  });
}

void dropout_mask(Tensor& keep, const Shape& shape, double p, std::uint64_t seed,
                  std::uint64_t stream, std::uint64_t offset,
                  const std::vector<std::uint64_t>& strides, Device device) {
  TR_CHECK(!shape.empty() && strides.size() + 1 == shape.size(),
           "dropout_mask: one stride per leading dimension");
  ensure_shape(keep, shape, DType::u8, device);
  const std::int64_t K = shape.back(), rows = K > 0 ? keep.numel() / K : 0;
#ifdef TR_HAVE_CUDA
  if (device == Device::cuda) {
    TR_CHECK(strides.size() <= 4, "dropout_mask on CUDA: at most 4 leading dimensions");
    cuda::DropoutLayout layout;
    layout.n = static_cast<int>(strides.size());
    for (int j = 0; j < layout.n; ++j) {
      layout.dims[j] = shape[j];
      layout.strides[j] = strides[j];
    }
    if (rows > 0)
      cuda::dropout_mask_strided(keep.data<std::uint8_t>(), rows, K, layout, static_cast<float>(p),
                                 seed, stream, offset);
    return;
  }
#endif
  TR_CHECK(device == Device::cpu, "dropout_mask: a CUDA mask in a build without the backend");
  std::uint8_t* out = keep.data<std::uint8_t>();
  const int n = static_cast<int>(strides.size());
#pragma omp parallel for schedule(static) if (rows * K > (1 << 16))
  for (std::int64_t r = 0; r < rows; ++r) {
    std::uint64_t counter = offset;
    std::int64_t rest = r;
    for (int j = n - 1; j >= 0; --j) {  // row index -> (i_0, ..., i_{n-2}), last fastest
      counter += static_cast<std::uint64_t>(rest % shape[j]) * strides[j];
      rest /= shape[j];
    }
    cpu::dropout_mask(out + r * K, K, static_cast<float>(p), seed, stream, counter);
  }
}

void dropout_apply(Tensor& out, const Tensor& in, const Tensor& keep, double p) {
  TR_CHECK(keep.numel() == in.numel(), "dropout: mask size");
  if (!out.same_buffer(in)) ensure_shape(out, in.shape(), in.dtype(), in.device());
  TR_CUDA_BF16_OP(cuda_of(in, DType::bf16) && cuda_of(out, DType::bf16), TR_OPERANDS(&keep),
                  cuda::dropout_apply(bf(out), bf(in), dev<std::uint8_t>(keep),
                                      static_cast<float>(1.0 / (1.0 - p)), in.numel()))
  Widened w;
  const Tensor& inw = w.in(in);
  Tensor& outw = w.out(out);
  TR_CUDA_OP(inw, TR_OPERANDS(&keep),
             cuda::dropout_apply(dev(outw), dev(inw), dev<std::uint8_t>(keep),
                                 static_cast<float>(1.0 / (1.0 - p)), in.numel());
             w.finish())
  dispatch_float(inw, [&](auto tag) {
    using T = decltype(tag);
    cpu::dropout_apply<T>(outw.data<T>(), inw.data<T>(), keep.data<std::uint8_t>(),
                          T(1.0 / (1.0 - p)), in.numel());
  });
  w.finish();
}

void dropout_add(Tensor& out, const Tensor& skip, const Tensor& in, const Tensor& keep, double p) {
  check_same_shape(skip, in, "dropout_add");
  TR_CHECK(keep.numel() == in.numel(), "dropout: mask size");
  if (!out.same_buffer(skip)) ensure_shape(out, in.shape(), promoted_dtype(skip, in), in.device());
  TR_CUDA_BF16_OP(cuda_of(out, DType::f32) && cuda_of(skip, DType::f32) && cuda_of(in, DType::bf16),
                  TR_OPERANDS(&keep),
                  cuda::dropout_add(dev(out), dev(skip), bf(in), dev<std::uint8_t>(keep),
                                    static_cast<float>(1.0 / (1.0 - p)), in.numel()))
  Widened w;
  const Tensor &skipw = w.in(skip), &inw = w.in(in);
  Tensor& outw = w.out(out);
  TR_CUDA_OP(inw, TR_OPERANDS(&skipw, &keep),
             cuda::dropout_add(dev(outw), dev(skipw), dev(inw), dev<std::uint8_t>(keep),
                               static_cast<float>(1.0 / (1.0 - p)), in.numel());
             w.finish())
  dispatch_float(inw, [&](auto tag) {
    using T = decltype(tag);
    cpu::dropout_add<T>(outw.data<T>(), skipw.data<T>(), inw.data<T>(), keep.data<std::uint8_t>(),
                        T(1.0 / (1.0 - p)), in.numel());
  });
  w.finish();
}

double sum_squares(const Tensor& x) {
#ifdef TR_HAVE_CUDA
  if (on_cuda(x)) return cuda::sum_squares(dev(x), x.numel());
#endif
  double s = 0;
  dispatch_float(x, [&](auto tag) {
    using T = decltype(tag);
    s = cpu::sum_squares<T>(x.data<T>(), x.numel());
  });
  return s;
}

}  // namespace tr::ops
