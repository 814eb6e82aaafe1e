// Device-dispatched operations beyond ops.h, for code that runs on tensors of either device:
//
// - `cuda_moves`: the CUDA twins of the data movements modules do in their own host loops
//   (patch extraction, positions, the ViT's CLS token; layers/cuda/model_kernels.h). The
//   modules keep their host loops and call these only for CUDA tensors.
// - `flat`: raw-pointer operations on a given device for buffers that are not whole tensors
//   (slices of the ZeRO-1 flat vector, DP buckets): copies, sums of squares, scaling and the
//   optimizer updates. On the CPU they call the same layers/cpu kernels as before.
//
// Compiled with the CUDA backend where it is built; without it a CUDA request is an internal
// error (no tensor can be on CUDA then).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "layers/tensor.h"

namespace tr {

namespace cuda_moves {
void images_to_patches(Tensor& patches, const Tensor& images, std::int64_t patch);
void add_position_rows(Tensor& x, const Tensor& table, std::int64_t offset);
void sum_position_rows_accumulate(Tensor& dtable, const Tensor& dy);
void vit_assemble_tokens(Tensor& tokens, const Tensor& patches, const Tensor& cls,
                         const Tensor& pos);
void vit_split_token_grads(Tensor& dpatches, Tensor& dcls, Tensor& dpos, const Tensor& dtokens);
void take_first_rows(Tensor& out, const Tensor& x);     // x [B, rows, d] -> out [B, d]
void put_first_rows(Tensor& dx, const Tensor& dfirst);  // dx [B, rows, d], zero elsewhere
}  // namespace cuda_moves

namespace flat {
// Bytes between any two buffers of `device` (device to device on the compute stream, in order
// with the kernels; host to host as memmove).
void copy(Device device, void* dst, const void* src, std::size_t bytes);
void zero(Device device, void* dst, std::size_t bytes);
double sum_squares(Device device, const float* x, std::int64_t n);
// out[k] = sum_squares(device, xs[k], ns[k]); on CUDA with one synchronisation for all.
void sum_squares_each(Device device, double* out, const float* const* xs, const std::int64_t* ns,
                      std::int64_t count);
void scale(Device device, float* x, float alpha, std::int64_t n);
void adamw_update(Device device, float* param, const float* grad, float* m, float* v,
                  std::int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                  std::int64_t step);
void sgd_update(Device device, float* param, const float* grad, float* momentum_buf, std::int64_t n,
                float lr, float momentum, float weight_decay, bool first_step);
}  // namespace flat

// The first row of each sequence (the ViT's CLS token), on either device and dtype:
// out = x[:, 0:1, :] shaped [B, 1, d]; and its backward, dx [B, rows, d] holding dfirst in the
// first rows and zeros elsewhere.
void take_first_rows(Tensor& out, const Tensor& x);
void put_first_rows(Tensor& dx, const Tensor& dfirst, std::int64_t rows);

// Rows of raw bytes on one device: dst + r * dst_pitch <- `bytes` bytes at
// src + index[r] * src_pitch, for each r < index.size() (pitches in bytes; index on the host;
// dst must not overlap the rows read). On CUDA one kernel, ordered on the compute stream. The
// decoder cache's reorders, appends and growth.
void gather_rows(Device device, void* dst, std::size_t dst_pitch, const void* src,
                 std::size_t src_pitch, const std::vector<std::int64_t>& index, std::size_t bytes);

// Bytes between buffers that may each be host or device memory (the communicators' copies).
void copy_any_memory(void* dst, const void* src, std::size_t bytes);
// True when `ptr` is CUDA device (or managed) memory; false for host memory and in a build
// without the CUDA backend.
bool is_device_memory(const void* ptr);

}  // namespace tr
