// CUDA twins of the data movements that the modules and models do in their own loops on the
// host (patch extraction, positions, the ViT's CLS token): the same element order and, where
// they sum, the same summation order as those loops, so CUDA results match the CPU's.
// Plain C++ header on device pointers, fp32, launched on the compute stream.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tr::cuda {

using i64 = std::int64_t;

// patches[b, py*gw + px, (c, r, col)] = images[b, c, py*P + r, px*P + col]
void images_to_patches(float* patches, const float* images, i64 B, i64 C, i64 H, i64 W, i64 P);
// x[b, t] += table[t + offset] over rows [B, Tn] of width d.
void add_position_rows(float* x, const float* table, i64 B, i64 Tn, i64 d, i64 offset);
// dtable[t] += sum over b (in order) of dy[b, t].
void sum_position_rows_accumulate(float* dtable, const float* dy, i64 B, i64 Tn, i64 d);
// tokens[b, 0] = cls + pos[0]; tokens[b, 1 + n] = patches[b, n] + pos[1 + n].
void vit_assemble_tokens(float* tokens, const float* patches, const float* cls, const float* pos,
                         i64 B, i64 N, i64 d);
// dcls += sum_b dtok[b, 0]; dpos[t] += sum_b dtok[b, t]; dpatches[b, n] = dtok[b, 1 + n].
void vit_split_token_grads(float* dpatches, float* dcls, float* dpos, const float* dtokens, i64 B,
                           i64 N, i64 d);
// out[b] = x[b, 0] of x [B, rows, d]; and its backward: dx zero but for dx[b, 0] = dcls[b].
void take_first_rows(float* out, const float* x, i64 B, i64 rows, i64 d);
void put_first_rows(float* dx, const float* dcls, i64 B, i64 rows, i64 d);
// dst + r * dst_pitch <- `bytes` bytes at src + index[r] * src_pitch for r < rows (pitches in
// bytes; index on the device).
void gather_rows(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch,
                 const std::int32_t* index, i64 rows, std::size_t bytes);

}  // namespace tr::cuda
