// Runs CUDA kernel source on the CPU, so that CI (no GPU) can test a kernel's indexing, tiling,
// masking and synchronisation, not only its algorithm. Include this before a kernel header
// written for it (layers/cuda/flash_attention_kernels.cuh): every thread of a block is a
// std::thread, __syncthreads and __syncwarp are barriers, a warp shuffle goes through an
// exchange array between two warp barriers, and WMMA is plain C++.
//
// What it cannot show: timing, bank conflicts, register or shared-memory limits, alignment
// faults, and the order in which real lanes race (a missing barrier may still pass here; the
// GPU run's compute-sanitizer racecheck is for that). Shared memory starts as 0xFF bytes (NaN
// as float and as bf16), so a read of an element nobody wrote spreads NaN into the results.
//
// WMMA: a fragment holds the whole 16 x 16 tile in every lane. Loads fill it in every lane;
// each lane computes and stores only its own row (lanes 0-15), so the work is split as on the
// GPU and a store is complete only after the warp's next __syncwarp, as on the GPU.
#pragma once

#define TR_CUDA_EMULATION 1

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "layers/cpu/bf16.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define TR_UNROLL
#define TR_UNROLL_4
#define TR_DYNAMIC_SMEM(name) unsigned char* name = ::tr::emu::dynamic_smem()

namespace tr::emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// What the threads of the block being run share.
struct Block {
  std::vector<unsigned char> smem;
  std::unique_ptr<std::barrier<>> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<double> exchange;  // one slot per thread, for shuffles
};

inline thread_local Dim3 t_thread, t_block, t_block_dim, t_grid_dim;
inline thread_local Block* t_current = nullptr;

inline unsigned char* dynamic_smem() {
  // 128-byte aligned, as `extern __shared__ __align__(128)` promises.
  const auto base = reinterpret_cast<std::uintptr_t>(t_current->smem.data());
  return t_current->smem.data() + ((128 - base % 128) % 128);
}
inline unsigned lane() {
  return t_thread.x % 32;
}
inline unsigned warp() {
  return t_thread.x / 32;
}
inline void sync_block() {
  t_current->all->arrive_and_wait();
}
inline void sync_warp() {
  t_current->warps[warp()]->arrive_and_wait();
}
template <typename T>
T shuffle_xor(T value, int lane_mask) {
  double* slots = t_current->exchange.data() + warp() * 32;
  slots[lane()] = static_cast<double>(value);
  sync_warp();
  const T other = static_cast<T>(slots[lane() ^ static_cast<unsigned>(lane_mask)]);
  sync_warp();  // every lane has read before a next shuffle writes
  return other;
}

// kernel<<<grid, block, smem_bytes>>>(args...): blocks one after another, each with its threads
// at once (one-dimensional blocks).
template <typename Kernel, typename... Args>
void launch(Dim3 grid, Dim3 block, std::size_t smem_bytes, Kernel kernel, Args... args) {
  const unsigned threads = block.x;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        Block state;
        state.smem.assign(smem_bytes + 128, 0xFF);
        state.all = std::make_unique<std::barrier<>>(threads);
        for (unsigned w = 0; w * 32 < threads; ++w)
          state.warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, threads - w * 32)));
        state.exchange.assign(threads, 0.0);
        std::vector<std::thread> pool;
        pool.reserve(threads);
        for (unsigned t = 0; t < threads; ++t)
          pool.emplace_back([&, t] {
            t_thread = {t, 0, 0};
            t_block = {bx, by, bz};
            t_block_dim = block;
            t_grid_dim = grid;
            t_current = &state;
            kernel(args...);
          });
        for (std::thread& th : pool) th.join();
      }
}

}  // namespace tr::emu

#define threadIdx (::tr::emu::t_thread)
#define blockIdx (::tr::emu::t_block)
#define blockDim (::tr::emu::t_block_dim)
#define gridDim (::tr::emu::t_grid_dim)

static inline void __syncthreads() {
  ::tr::emu::sync_block();
}
static inline void __syncwarp(unsigned = 0xffffffffu) {
  ::tr::emu::sync_warp();
}
template <typename T>
static T __shfl_xor_sync(unsigned, T value, int lane_mask) {
  return ::tr::emu::shuffle_xor(value, lane_mask);
}
[[noreturn]] static inline void __trap() {
  std::abort();
}

// bf16 storage and conversions (round to nearest even, as __float2bfloat16_rn). Functions
// named as CUDA's are static: they must not meet the CUDA library's at link time.
struct __nv_bfloat16 {
  std::uint16_t bits;
};
static inline __nv_bfloat16 __float2bfloat16_rn(float x) {
  return {tr::cpu::f32_to_bf16_bits(x)};
}
static inline float __bfloat162float(__nv_bfloat16 h) {
  return tr::cpu::bf16_bits_to_f32(h.bits);
}
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short bits) {
  return {bits};
}

struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
  return {x, y, z, w};
}

// CUDA's device min/max on integers.
namespace tr::cuda {
using std::max;
using std::min;
}  // namespace tr::cuda

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulation has the 16 x 16 x 16 shape only");
  float x[16][16];
};

inline float widen(float v) {
  return v;
}
inline float widen(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename Use, typename T, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      f.x[r][c] = widen(std::is_same_v<Layout, col_major> ? p[c * ldm + r] : p[r * ldm + c]);
}

template <typename T>
void fill_fragment(fragment<accumulator, 16, 16, 16, T>& f, T value) {
  for (auto& row : f.x) std::fill(std::begin(row), std::end(row), value);
}

// d = a b + c, the lane's own row (lanes 0-15; the others hold no row).
template <typename TA, typename LA, typename TB, typename LB, typename TC>
void mma_sync(fragment<accumulator, 16, 16, 16, TC>& d,
              const fragment<matrix_a, 16, 16, 16, TA, LA>& a,
              const fragment<matrix_b, 16, 16, 16, TB, LB>& b,
              const fragment<accumulator, 16, 16, 16, TC>& c) {
  const unsigned r = ::tr::emu::lane();
  if (r >= 16) return;
  float row[16];
  for (int n = 0; n < 16; ++n) {
    float sum = c.x[r][n];
    for (int k = 0; k < 16; ++k) sum += a.x[r][k] * b.x[k][n];
    row[n] = sum;
  }
  std::copy(std::begin(row), std::end(row), d.x[r]);
}

template <typename T>
void store_matrix_sync(T* p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ldm,
                       layout_t layout) {
  const unsigned r = ::tr::emu::lane();
  if (r >= 16) return;
  for (unsigned c = 0; c < 16; ++c) {
    if (layout == mem_row_major)
      p[r * ldm + c] = f.x[r][c];
    else
      p[c * ldm + r] = f.x[r][c];
  }
}

}  // namespace nvcuda::wmma
