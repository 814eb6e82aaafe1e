// The device code of layers/cuda/model_kernels.h (the data movements of the modules' host
// loops: patches, position rows, the ViT's CLS token and token assembly): one thread per output
// element, grid-stride loops of grid_for(n) blocks of kThreads; sums walk the batch in order,
// as the host loops they replace.
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

__global__ void images_to_patches_kernel(float* patches, const float* images, i64 B, i64 C, i64 H,
                                         i64 W, i64 P) {
  const i64 gh = H / P, gw = W / P, len = C * P * P;
  TR_GRID_STRIDE(i, B * gh * gw * len) {
    const i64 e = i % len, patch = i / len;
    const i64 px = patch % gw, py = (patch / gw) % gh, b = patch / (gw * gh);
    const i64 col = e % P, r = (e / P) % P, c = e / (P * P);
    patches[i] = images[((b * C + c) * H + py * P + r) * W + px * P + col];
  }
}

__global__ void add_position_rows_kernel(float* x, const float* table, i64 B, i64 Tn, i64 d,
                                         i64 offset) {
  TR_GRID_STRIDE(i, B * Tn * d) {
    const i64 t = (i / d) % Tn;
    x[i] += table[(t + offset) * d + i % d];
  }
}

__global__ void sum_position_rows_kernel(float* dtable, const float* dy, i64 B, i64 Tn, i64 d) {
  TR_GRID_STRIDE(j, Tn * d) {
    float s = dtable[j];
    for (i64 b = 0; b < B; ++b) s += dy[b * Tn * d + j];  // b in order, as the host loop
    dtable[j] = s;
  }
}

__global__ void assemble_tokens_kernel(float* tokens, const float* patches, const float* cls,
                                       const float* pos, i64 B, i64 N, i64 d) {
  TR_GRID_STRIDE(i, B * (N + 1) * d) {
    const i64 c = i % d, t = (i / d) % (N + 1), b = i / ((N + 1) * d);
    const float src = t == 0 ? cls[c] : patches[(b * N + t - 1) * d + c];
    tokens[i] = src + pos[t * d + c];
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

__global__ void take_first_rows_kernel(float* out, const float* x, i64 B, i64 rows, i64 d) {
  TR_GRID_STRIDE(i, B * d) out[i] = x[(i / d) * rows * d + i % d];
}

__global__ void put_first_rows_kernel(float* dx, const float* dcls, i64 B, i64 rows, i64 d) {
  TR_GRID_STRIDE(i, B * rows * d) {
    const i64 r = (i / d) % rows, b = i / (rows * d);
    dx[i] = r == 0 ? dcls[b * d + i % d] : 0.0f;
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
