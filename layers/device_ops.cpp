#include "layers/device_ops.h"

#include <cstring>

#include "layers/cpu/kernels.h"
#include "layers/op_profile.h"

#ifdef TR_HAVE_CUDA
#include "layers/cuda/kernels.h"
#include "layers/cuda/model_kernels.h"
#include "layers/cuda/runtime.h"
#endif

namespace tr {

namespace {

[[noreturn, maybe_unused]] void no_backend() {
  throw InternalError("a CUDA tensor in a build without the CUDA backend");
}

// Every operand of a cuda_moves call must be a CUDA f32 tensor.
void require_cuda(std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    TR_CHECK(t->device() == Device::cuda && (t->dtype() == DType::f32 || t->dtype() == DType::bf16),
             "CUDA data movement on a non-CUDA or non-f32/bf16 tensor");
}

}  // namespace

namespace cuda_moves {

#ifdef TR_HAVE_CUDA
void images_to_patches(Tensor& patches, const Tensor& images, std::int64_t patch) {
  require_cuda({&patches, &images});
  OpTimer timer(__func__);
  cuda::images_to_patches(patches.data<float>(), images.data<float>(), images.dim(0), images.dim(1),
                          images.dim(2), images.dim(3), patch);
}
void add_position_rows(Tensor& x, const Tensor& table, std::int64_t offset) {
  require_cuda({&x, &table});
  OpTimer timer(__func__);
  cuda::add_position_rows(x.data<float>(), table.data<float>(), x.dim(0), x.dim(1), x.dim(2),
                          offset);
}
void sum_position_rows_accumulate(Tensor& dtable, const Tensor& dy) {
  require_cuda({&dtable, &dy});
  OpTimer timer(__func__);
  cuda::sum_position_rows_accumulate(dtable.data<float>(), dy.data<float>(), dy.dim(0), dy.dim(1),
                                     dy.dim(2));
}
void vit_assemble_tokens(Tensor& tokens, const Tensor& patches, const Tensor& cls,
                         const Tensor& pos) {
  require_cuda({&tokens, &patches, &cls, &pos});
  OpTimer timer(__func__);
  cuda::vit_assemble_tokens(tokens.data<float>(), patches.data<float>(), cls.data<float>(),
                            pos.data<float>(), patches.dim(0), patches.dim(1), patches.dim(2));
}
void vit_split_token_grads(Tensor& dpatches, Tensor& dcls, Tensor& dpos, const Tensor& dtokens) {
  require_cuda({&dpatches, &dcls, &dpos, &dtokens});
  OpTimer timer(__func__);
  cuda::vit_split_token_grads(dpatches.data<float>(), dcls.data<float>(), dpos.data<float>(),
                              dtokens.data<float>(), dtokens.dim(0), dtokens.dim(1) - 1,
                              dtokens.dim(2));
}
// bf16 rows (a bf16 activation's gradient, layers/precision.h) move as bytes.
void take_first_rows(Tensor& out, const Tensor& x) {
  require_cuda({&out, &x});
  OpTimer timer(__func__);
  if (x.dtype() != DType::f32) {
    const std::size_t row = static_cast<std::size_t>(x.dim(2)) * dtype_size(x.dtype());
    cuda::copy_rows_async(out.raw(), row, x.raw(), row * static_cast<std::size_t>(x.dim(1)), row,
                          static_cast<std::size_t>(x.dim(0)));
    return;
  }
  cuda::take_first_rows(out.data<float>(), x.data<float>(), x.dim(0), x.dim(1), x.dim(2));
}
void put_first_rows(Tensor& dx, const Tensor& dfirst) {
  require_cuda({&dx, &dfirst});
  OpTimer timer(__func__);
  if (dx.dtype() != DType::f32) {
    const std::size_t row = static_cast<std::size_t>(dx.dim(2)) * dtype_size(dx.dtype());
    cuda::memset_zero(dx.raw(), dx.bytes());
    cuda::copy_rows_async(dx.raw(), row * static_cast<std::size_t>(dx.dim(1)), dfirst.raw(), row,
                          row, static_cast<std::size_t>(dx.dim(0)));
    return;
  }
  cuda::put_first_rows(dx.data<float>(), dfirst.data<float>(), dx.dim(0), dx.dim(1), dx.dim(2));
}
#else
void images_to_patches(Tensor&, const Tensor&, std::int64_t) {
  no_backend();
}
void add_position_rows(Tensor&, const Tensor&, std::int64_t) {
  no_backend();
}
void sum_position_rows_accumulate(Tensor&, const Tensor&) {
  no_backend();
}
void vit_assemble_tokens(Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  no_backend();
}
void vit_split_token_grads(Tensor&, Tensor&, Tensor&, const Tensor&) {
  no_backend();
}
void take_first_rows(Tensor&, const Tensor&) {
  no_backend();
}
void put_first_rows(Tensor&, const Tensor&) {
  no_backend();
}
#endif

}  // namespace cuda_moves

void take_first_rows(Tensor& out, const Tensor& x) {
  const std::int64_t B = x.dim(0), rows = x.dim(1), d = x.dim(2);
  ensure_shape(out, {B, 1, d}, x.dtype(), x.device());
  if (x.device() == Device::cuda) return cuda_moves::take_first_rows(out, x);
  const std::size_t row_bytes = static_cast<std::size_t>(d) * dtype_size(x.dtype());
  const auto* src = static_cast<const char*>(x.raw());
  auto* dst = static_cast<char*>(out.raw());
  for (std::int64_t b = 0; b < B; ++b)
    std::memcpy(dst + b * row_bytes, src + b * rows * row_bytes, row_bytes);
}

void put_first_rows(Tensor& dx, const Tensor& dfirst, std::int64_t rows) {
  const std::int64_t B = dfirst.dim(0), d = dfirst.dim(-1);
  ensure_shape(dx, {B, rows, d}, dfirst.dtype(), dfirst.device());
  if (dfirst.device() == Device::cuda) return cuda_moves::put_first_rows(dx, dfirst);
  const std::size_t row_bytes = static_cast<std::size_t>(d) * dtype_size(dfirst.dtype());
  std::memset(dx.raw(), 0, dx.bytes());
  const auto* src = static_cast<const char*>(dfirst.raw());
  auto* dst = static_cast<char*>(dx.raw());
  for (std::int64_t b = 0; b < B; ++b)
    std::memcpy(dst + b * rows * row_bytes, src + b * row_bytes, row_bytes);
}

namespace flat {

void copy(Device device, void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0 || dst == src) return;
  if (device == Device::cpu) {
    std::memmove(dst, src, bytes);
    return;
  }
#ifdef TR_HAVE_CUDA
  OpTimer timer(__func__);
  cuda::copy_async(dst, src, bytes);
#else
  no_backend();
#endif
}

void zero(Device device, void* dst, std::size_t bytes) {
  if (bytes == 0) return;
  if (device == Device::cpu) {
    std::memset(dst, 0, bytes);
    return;
  }
#ifdef TR_HAVE_CUDA
  OpTimer timer(__func__);
  cuda::memset_zero(dst, bytes);
#else
  no_backend();
#endif
}

double sum_squares(Device device, const float* x, std::int64_t n) {
  if (device == Device::cpu) return cpu::sum_squares(x, n);
#ifdef TR_HAVE_CUDA
  return cuda::sum_squares(x, n);
#else
  no_backend();
#endif
}

void sum_squares_each(Device device, double* out, const float* const* xs, const std::int64_t* ns,
                      std::int64_t count) {
  if (device == Device::cpu) {
    for (std::int64_t k = 0; k < count; ++k) out[k] = cpu::sum_squares(xs[k], ns[k]);
    return;
  }
#ifdef TR_HAVE_CUDA
  OpTimer timer(__func__);
  cuda::sum_squares_each(out, xs, ns, count);
#else
  no_backend();
#endif
}

void scale(Device device, float* x, float alpha, std::int64_t n) {
  if (device == Device::cpu) return cpu::scale(x, x, alpha, n);
#ifdef TR_HAVE_CUDA
  OpTimer timer(__func__);
  cuda::scale(x, x, alpha, n);
#else
  no_backend();
#endif
}

void adamw_update(Device device, float* param, const float* grad, float* m, float* v,
                  std::int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                  std::int64_t step) {
  if (device == Device::cpu)
    return cpu::adamw_update<float>(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay,
                                    step);
#ifdef TR_HAVE_CUDA
  OpTimer timer(__func__);
  cuda::adamw_update(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
#else
  no_backend();
#endif
}

void sgd_update(Device device, float* param, const float* grad, float* momentum_buf, std::int64_t n,
                float lr, float momentum, float weight_decay, bool first_step) {
  if (device == Device::cpu)
    return cpu::sgd_update<float>(param, grad, momentum_buf, n, lr, momentum, weight_decay,
                                  first_step);
#ifdef TR_HAVE_CUDA
  cuda::sgd_update(param, grad, momentum_buf, n, lr, momentum, weight_decay, first_step);
#else
  no_backend();
#endif
}

}  // namespace flat

void copy_any_memory(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0 || dst == src) return;
#ifdef TR_HAVE_CUDA
  if (cuda::is_device_pointer(dst) || cuda::is_device_pointer(src))
    return cuda::copy(dst, src, bytes);
#endif
  std::memmove(dst, src, bytes);
}

bool is_device_memory(const void* ptr) {
#ifdef TR_HAVE_CUDA
  return cuda::is_device_pointer(ptr);
#else
  (void)ptr;
  return false;
#endif
}

void gather_rows(Device device, void* dst, std::size_t dst_pitch, const void* src,
                 std::size_t src_pitch, const std::vector<std::int64_t>& index, std::size_t bytes) {
  if (index.empty() || bytes == 0) return;
  if (device == Device::cpu) {
    for (std::size_t r = 0; r < index.size(); ++r)
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch,
                  static_cast<const char*>(src) + static_cast<std::size_t>(index[r]) * src_pitch,
                  bytes);
    return;
  }
#ifdef TR_HAVE_CUDA
  OpTimer timer(__func__);
  Tensor host = Tensor::empty({static_cast<std::int64_t>(index.size())}, DType::i32);
  for (std::size_t r = 0; r < index.size(); ++r) {
    TR_CHECK(index[r] >= 0 && index[r] < (std::int64_t{1} << 31), "gather_rows: row index");
    host.data<std::int32_t>()[r] = static_cast<std::int32_t>(index[r]);
  }
  Tensor rows = Tensor::empty(host.shape(), DType::i32, Device::cuda);
  rows.copy_from(host);  // a staged upload, ordered before the kernel
  cuda::gather_rows(dst, dst_pitch, src, src_pitch, rows.data<std::int32_t>(),
                    static_cast<std::int64_t>(index.size()), bytes);
#else
  no_backend();
#endif
}

}  // namespace tr
