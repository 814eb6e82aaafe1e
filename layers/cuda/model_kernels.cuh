// The device code of layers/cuda/model_kernels.h (the data movements of the modules' host
// loops: patches, position rows, the ViT's CLS token and token assembly): a block per output
// row where rows need decoding (grid_for_rows, TR_ROWS_STRIDE), else one thread per output element
// in grid-stride loops of grid_for(n) blocks of kThreads; sums walk the batch in order, as the
// host loops they replace.
//
// In a header that also compiles for the host under tests/common/cuda_emulation.h
// (tests/layers/test_model_kernels_emulated.cpp runs these kernels on the CPU); the launches
// are in model_kernels.cu.
#pragma once

#include <cstdint>

#include "layers/cuda/device_helpers.cuh"
#include "layers/cuda/model_kernels.h"

namespace tr::cuda::model {
namespace {  // each translation unit (the CUDA build's, an emulated test's) has its own copy

// A block per patch (grid_for_rows(B * gh * gw)), its threads over the patch's C x P x P values in
// 32-bit arithmetic.
__global__ void images_to_patches_kernel(float* patches, const float* images, i64 B, i64 C, i64 H,
                                         i64 W, i64 P) {
  const i64 gh = H / P, gw = W / P, len = C * P * P;
  const auto P32 = static_cast<std::uint32_t>(P), PP = P32 * P32;
  TR_ROWS_STRIDE(patch, B * gh * gw) {
    const i64 px = patch % gw, py = (patch / gw) % gh, b = patch / (gw * gh);
    const float* corner = images + b * C * H * W + py * P * W + px * P;
    float* out = patches + patch * len;
    for (auto e = static_cast<std::uint32_t>(threadIdx.x); e < static_cast<std::uint32_t>(len);
         e += blockDim.x) {
      const std::uint32_t c = e / PP, in_channel = e - c * PP, r = in_channel / P32,
                          col = in_channel - r * P32;
      out[e] = corner[(static_cast<i64>(c) * H + r) * W + col];
    }
  }
}

// A block per row of x ([B * Tn, d]; grid_for_rows(B * Tn)).
__global__ void add_position_rows_kernel(float* x, const float* table, i64 B, i64 Tn, i64 d,
                                         i64 offset) {
  TR_ROWS_STRIDE(r, B * Tn) {
    const float* position = table + (r % Tn + offset) * d;
    TR_ROW_COLUMNS(c, d) x[r * d + c] += position[c];
  }
}

__global__ void sum_position_rows_kernel(float* dtable, const float* dy, i64 B, i64 Tn, i64 d) {
  TR_GRID_STRIDE(j, Tn * d) {
    float s = dtable[j];
    for (i64 b = 0; b < B; ++b) s += dy[b * Tn * d + j];  // b in order, as the host loop
    dtable[j] = s;
  }
}

// A block per token row (grid_for_rows(B * (N + 1))).
__global__ void assemble_tokens_kernel(float* tokens, const float* patches, const float* cls,
                                       const float* pos, i64 B, i64 N, i64 d) {
  TR_ROWS_STRIDE(r, B * (N + 1)) {
    const i64 t = r % (N + 1), b = r / (N + 1);
    const float* src = t == 0 ? cls : patches + (b * N + t - 1) * d;
    TR_ROW_COLUMNS(c, d) tokens[r * d + c] = src[c] + pos[t * d + c];
  }
}

// Thread per (t, c): the position gradient (and the CLS one at t = 0) summed over b in order;
// the patch rows copied on the way.
__global__ void split_token_grads_kernel(float* dpatches, float* dcls, float* dpos,
                                         const float* dtokens, i64 B, i64 N, i64 d) {
  TR_GRID_STRIDE(j, (N + 1) * d) {
    const i64 t = j / d, c = j % d;
    float sp = dpos[j];
    float sc = t == 0 ? dcls[c] : 0.0f;
    for (i64 b = 0; b < B; ++b) {
      const float g = dtokens[b * (N + 1) * d + j];
      sp += g;
      if (t == 0)
        sc += g;
      else
        dpatches[(b * N + t - 1) * d + c] = g;
    }
    dpos[j] = sp;
    if (t == 0) dcls[c] = sc;
  }
}

// A block per sequence (grid_for_rows(B)).
__global__ void take_first_rows_kernel(float* out, const float* x, i64 B, i64 rows, i64 d) {
  TR_ROWS_STRIDE(b, B) TR_ROW_COLUMNS(c, d) out[b * d + c] = x[b * rows * d + c];
}

// A block per row of dx ([B * rows, d]; grid_for_rows(B * rows)).
__global__ void put_first_rows_kernel(float* dx, const float* dcls, i64 B, i64 rows, i64 d) {
  TR_ROWS_STRIDE(r, B * rows) {
    const float* first = r % rows == 0 ? dcls + (r / rows) * d : nullptr;
    TR_ROW_COLUMNS(c, d) dx[r * d + c] = first ? first[c] : 0.0f;
  }
}

// dst row r (pitch dst_pitch) = the first `words` units of src row index[r] (pitch src_pitch),
// units of Word (4 bytes where every size and address allows, else 1): the decoder cache's
// gathers and appends.
template <typename Word>
__global__ void gather_rows_kernel(Word* dst, i64 dst_pitch, const Word* src, i64 src_pitch,
                                   const std::int32_t* index, i64 rows, i64 words) {
  TR_GRID_STRIDE(i, rows * words) {
    const i64 r = i / words, w = i % words;
    dst[r * dst_pitch + w] = src[static_cast<i64>(index[r]) * src_pitch + w];
  }
}

}  // namespace
}  // namespace tr::cuda::model
