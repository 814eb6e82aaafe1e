// The CUDA kernels of layers/cuda/model_kernels.h (layers/cuda/model_kernels.cuh: patch
// extraction, position rows added and summed, the ViT's CLS token and token assembly, first
// rows taken and put back), compiled for the host and run under tests/common/cuda_emulation.h
// with the launches' geometry. Their CPU counterparts are loops inside the modules
// (PatchEmbedding, PositionalEncoding, ViT), not kernels of layers/cpu/kernels.h: the
// references here are those loops as model_kernels.h documents them (sums over the batch in
// order). 1e-5 relative; overwritten outputs start as NaN, accumulated ones from random values.
// Images whose sides are not multiples of the patch (the edge pixels belong to no patch), widths
// not multiples of 4 or 32, more elements than one block. The decoder cache's row gathers, in
// words and in bytes.
#include "common/cuda_emulation.h"
// (the emulation first: the kernel headers compile against it)
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "common/emulated_kernels.h"
#include "layers/cuda/model_kernels.cuh"

namespace tr {
namespace {

using namespace emu_test;
namespace mk = cuda::model;

constexpr double kTol = 1e-5;

// model_kernels.cu's launches: grid-stride loops over n elements, or a block per row.
template <typename Kernel, typename... Args>
void launch_n(i64 n, Kernel kernel, Args... args) {
  if (n > 0) emu::launch(cuda::grid_for(n), cuda::kThreads, 0, kernel, args...);
}
template <typename Kernel, typename... Args>
void launch_rows(i64 rows, Kernel kernel, Args... args) {
  if (rows > 0) emu::launch(cuda::grid_for_rows(rows), cuda::kThreads, 0, kernel, args...);
}

TEST(EmulatedModelKernels, ImagesToPatches) {
  // 11 x 14 images in 3 x 3 patches: 3 x 4 patches, the last rows and columns in none.
  const i64 B = 2, C = 3, H = 11, W = 14, P = 3, gh = H / P, gw = W / P, len = C * P * P;
  const F images = random_floats(B * C * H * W, 1);
  F want(B * gh * gw * len);
  for (i64 b = 0; b < B; ++b)
    for (i64 py = 0; py < gh; ++py)
      for (i64 px = 0; px < gw; ++px)
        for (i64 c = 0; c < C; ++c)
          for (i64 r = 0; r < P; ++r)
            for (i64 col = 0; col < P; ++col)
              want[((b * gh + py) * gw + px) * len + (c * P + r) * P + col] =
                  images[((b * C + c) * H + py * P + r) * W + px * P + col];
  F got = poison(want.size());
  launch_rows(B * gh * gw, mk::images_to_patches_kernel, got.data(), images.data(), B, C, H, W, P);
  EXPECT_LE(max_rel_error(got, want), kTol);
}

TEST(EmulatedModelKernels, PositionRows) {
  const i64 B = 3, Tn = 7, d = 45, offset = 2, rows = Tn + offset + 1;
  const F x0 = random_floats(B * Tn * d, 2), table = random_floats(rows * d, 3),
          dy = random_floats(B * Tn * d, 4), dtable0 = random_floats(Tn * d, 5);
  F want = x0;
  for (i64 b = 0; b < B; ++b)
    for (i64 t = 0; t < Tn; ++t)
      for (i64 c = 0; c < d; ++c) want[(b * Tn + t) * d + c] += table[(t + offset) * d + c];
  F got = x0;
  launch_rows(B * Tn, mk::add_position_rows_kernel, got.data(), table.data(), B, Tn, d, offset);
  EXPECT_LE(max_rel_error(got, want), kTol) << "add_position_rows";

  F dwant = dtable0;
  for (i64 b = 0; b < B; ++b)
    for (i64 j = 0; j < Tn * d; ++j) dwant[j] += dy[b * Tn * d + j];
  F dgot = dtable0;
  launch_n(Tn * d, mk::sum_position_rows_kernel, dgot.data(), dy.data(), B, Tn, d);
  EXPECT_LE(max_rel_error(dgot, dwant), kTol) << "sum_position_rows_accumulate";
}

TEST(EmulatedModelKernels, VitTokens) {
  const i64 B = 2, N = 12, d = 37, T = N + 1;
  const F patches = random_floats(B * N * d, 6), cls = random_floats(d, 7),
          pos = random_floats(T * d, 8), dtokens = random_floats(B * T * d, 9),
          dcls0 = random_floats(d, 10), dpos0 = random_floats(T * d, 11);
  F want(B * T * d);
  for (i64 b = 0; b < B; ++b)
    for (i64 t = 0; t < T; ++t)
      for (i64 c = 0; c < d; ++c)
        want[(b * T + t) * d + c] =
            (t == 0 ? cls[c] : patches[(b * N + t - 1) * d + c]) + pos[t * d + c];
  F got = poison(B * T * d);
  launch_rows(B * T, mk::assemble_tokens_kernel, got.data(), patches.data(), cls.data(), pos.data(),
              B, N, d);
  EXPECT_LE(max_rel_error(got, want), kTol) << "vit_assemble_tokens";

  F dpatches(B * N * d), dcls = dcls0, dpos = dpos0;
  for (i64 b = 0; b < B; ++b)
    for (i64 t = 0; t < T; ++t)
      for (i64 c = 0; c < d; ++c) {
        const float g = dtokens[(b * T + t) * d + c];
        dpos[t * d + c] += g;
        if (t == 0)
          dcls[c] += g;
        else
          dpatches[(b * N + t - 1) * d + c] = g;
      }
  F kdpatches = poison(B * N * d), kdcls = dcls0, kdpos = dpos0;
  launch_n(T * d, mk::split_token_grads_kernel, kdpatches.data(), kdcls.data(), kdpos.data(),
           dtokens.data(), B, N, d);
  EXPECT_LE(max_rel_error(kdpatches, dpatches), kTol) << "vit_split_token_grads: patches";
  EXPECT_LE(max_rel_error(kdcls, dcls), kTol) << "vit_split_token_grads: cls";
  EXPECT_LE(max_rel_error(kdpos, dpos), kTol) << "vit_split_token_grads: positions";
}

TEST(EmulatedModelKernels, FirstRows) {
  const i64 B = 3, rows = 5, d = 90;
  const F x = random_floats(B * rows * d, 12), dfirst = random_floats(B * d, 13);
  F want(B * d), dwant(B * rows * d, 0.0f);
  for (i64 b = 0; b < B; ++b)
    for (i64 c = 0; c < d; ++c) {
      want[b * d + c] = x[b * rows * d + c];
      dwant[b * rows * d + c] = dfirst[b * d + c];
    }
  F got = poison(B * d), dgot = poison(B * rows * d);
  launch_rows(B, mk::take_first_rows_kernel, got.data(), x.data(), B, rows, d);
  launch_rows(B * rows, mk::put_first_rows_kernel, dgot.data(), dfirst.data(), B, rows, d);
  EXPECT_LE(max_rel_error(got, want), kTol) << "take_first_rows";
  EXPECT_LE(max_rel_error(dgot, dwant), kTol) << "put_first_rows";
}

// The decoder cache's row gathers (layers/device_ops.h gather_rows): rows repeated, dropped and
// permuted, prefixes of rows copied between pitches, in 4-byte words and in bytes; the rest of
// each destination row untouched.
TEST(EmulatedModelKernels, GatherRows) {
  const std::vector<std::int32_t> index = {2, 0, 0, 4, 1};
  const i64 rows = static_cast<i64>(index.size()), src_rows = 5;
  for (const bool words : {true, false}) {
    const i64 src_pitch = words ? 48 : 45, dst_pitch = words ? 64 : 51, bytes = words ? 40 : 43;
    std::vector<unsigned char> src(static_cast<std::size_t>(src_rows * src_pitch));
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<unsigned char>(i * 7 + 3);
    std::vector<unsigned char> want(static_cast<std::size_t>(rows * dst_pitch), 0xEE);
    for (i64 r = 0; r < rows; ++r)
      for (i64 b = 0; b < bytes; ++b) want[r * dst_pitch + b] = src[index[r] * src_pitch + b];
    std::vector<unsigned char> got(want.size(), 0xEE);
    if (words)
      launch_n(rows * bytes / 4, mk::gather_rows_kernel<std::uint32_t>,
               reinterpret_cast<std::uint32_t*>(got.data()), dst_pitch / 4,
               reinterpret_cast<const std::uint32_t*>(src.data()), src_pitch / 4, index.data(),
               rows, bytes / 4);
    else
      launch_n(rows * bytes, mk::gather_rows_kernel<unsigned char>, got.data(), dst_pitch,
               static_cast<const unsigned char*>(src.data()), src_pitch, index.data(), rows, bytes);
    EXPECT_EQ(got, want) << (words ? "words" : "bytes");
  }
}

}  // namespace
}  // namespace tr
