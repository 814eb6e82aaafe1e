// Flash attention on CUDA: the launches of layers/cuda/flash_attention_mma_kernels.cuh (bf16,
// mma.sync, scores in registers: the default), flash_attention_kernels.cuh (bf16, WMMA, scores
// staged in shared memory: TR_FLASH_KERNELS=wmma) and flash_attention_f32_kernels.cuh (fp32);
// the algorithms and work split are described there.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "layers/cuda/flash_attention_f32_kernels.cuh"
#include "layers/cuda/flash_attention_kernels.cuh"
#include "layers/cuda/flash_attention_mma_kernels.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"
#include "layers/cuda/runtime.h"

namespace tr::cuda {

namespace {

using namespace flash;

// The kernels' storage type of a launcher's element type.
template <typename E>
struct FlashStorage {
  using type = E;
};
template <>
struct FlashStorage<bf16> {
  using type = bfloat;
};
template <typename E>
using flash_storage_t = typename FlashStorage<E>::type;

// The problem of a call, after the checks the kernels rely on. Rows load as 16-byte vectors
// where the head width is a multiple of 16 bytes and every pointer is 16-byte aligned.
template <typename E>
ProblemOf<flash_storage_t<E>> checked_problem(const E* q, const E* k, const E* v,
                                              const std::int32_t* kv_len,
                                              const std::uint8_t* keep_mask, float keep_scale,
                                              i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                                              i64 q_offset,
                                              std::initializer_list<const void*> others) {
  TR_CHECK(Dh > 0 && Dh <= kFlashMaxHeadDim, "flash attention: head width above 128");
  TR_CHECK(B * H < (i64{1} << 31) && Tq < (i64{1} << 30) && Tk < (i64{1} << 30),
           "flash attention: sizes beyond 32-bit indices");
  // The grids put 64-row tiles on y, which CUDA caps at 65535 blocks.
  TR_CHECK((std::max(Tq, Tk) + kTile - 1) / kTile <= 65535,
           "flash attention: sequences above 65535 tiles of 64 rows");
  constexpr i64 per_vector = 16 / sizeof(E);
  bool vec = Dh % per_vector == 0 && aligned16(q) && aligned16(k) && aligned16(v);
  for (const void* o : others) vec = vec && aligned16(o);
  return make_problem(q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh, causal, q_offset,
                      vec);
}

void require_bf16_tensor_cores() {
  TR_CHECK(compute_capability() >= 80,
           "flash attention needs bf16 tensor cores (compute capability 8.0 or later)");
}

// The most shared memory any GPU gives one block (an H100's 227 KiB); smaller GPUs check each
// instantiation's need against their own limit (flash_attention_supported).
constexpr std::size_t kLargestSmemOptIn = 227 * 1024;

// Kernels above 48 KiB of dynamic shared memory must say so. Said before every launch: the
// attribute belongs to the current device's context (a process may select another GPU), and
// the call costs a microsecond of host time.
template <typename Kernel>
void allow_smem(Kernel kernel, std::size_t bytes) {
  TR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(bytes)));
}

// The bf16 kernels that run: the mma.sync ones (the default; about twice as fast on an H200),
// or the WMMA ones (TR_FLASH_KERNELS=wmma, set_flash_mma_kernels(false)). Both families pass
// the gpu tests and compute-sanitizer on an H200. TR_FLASH_KERNELS=mma, or any value but wmma,
// keeps the default.
std::atomic<bool> g_mma_kernels{[] {
  const char* env = std::getenv("TR_FLASH_KERNELS");
  return env == nullptr || std::strcmp(env, "wmma") != 0;
}()};
bool wmma_kernels() {
  return !g_mma_kernels;
}

// The launches of one precision's kernels for one padded head width.
template <typename S, int DHP>
struct Launch;

// A bf16 family's kernels and their shared memory: WMMA (scores staged in shared memory) and
// mma.sync (scores in registers).
template <int DHP>
struct WmmaFamily {
  static constexpr std::size_t forward_bytes = forward_smem<DHP>();
  static constexpr std::size_t backward_bytes = backward_smem<DHP>();
  static auto forward() { return flash_forward_kernel<DHP>; }
  static auto dkdv() { return flash_dkdv_kernel<DHP>; }
  static auto dq() { return flash_dq_kernel<DHP>; }
};
template <int DHP>
struct MmaFamily {
  static constexpr std::size_t forward_bytes = mma_forward_smem<DHP>();
  static constexpr std::size_t backward_bytes = mma_backward_smem<DHP>();
  static auto forward() { return flash_mma_forward_kernel<DHP>; }
  static auto dkdv() { return flash_mma_dkdv_kernel<DHP>; }
  static auto dq() { return flash_mma_dq_kernel<DHP>; }
};

// One bf16 family's launches (the kernels' signatures are the same in both).
template <typename Family>
struct LaunchBf16 {
  static constexpr std::size_t largest_smem() {
    return std::max(Family::forward_bytes, Family::backward_bytes);
  }
  static_assert(largest_smem() <= kLargestSmemOptIn, "flash attention: shared memory");
  static void forward(bfloat* out, float* lse, const ProblemOf<bfloat>& p) {
    constexpr std::size_t smem = Family::forward_bytes;
    allow_smem(Family::forward(), smem);
    const Grid g = query_grid(p);
    Family::forward()<<<dim3(g.x, g.y), kFlashThreads, smem, compute_stream()>>>(out, lse, p);
    TR_CUDA_LAUNCH_CHECK();
  }
  static void backward(bfloat* dq, bfloat* dk, bfloat* dv, const bfloat* dout, const float* lse,
                       const float* rowdot, const ProblemOf<bfloat>& p) {
    constexpr std::size_t smem = Family::backward_bytes;
    allow_smem(Family::dkdv(), smem);
    allow_smem(Family::dq(), smem);
    if (p.Tk > 0) {
      const Grid g = key_grid(p);
      Family::dkdv()<<<dim3(g.x, g.y), kFlashThreads, smem, compute_stream()>>>(dk, dv, dout, lse,
                                                                                rowdot, p);
      TR_CUDA_LAUNCH_CHECK();
    }
    const Grid g = query_grid(p);
    Family::dq()<<<dim3(g.x, g.y), kFlashThreads, smem, compute_stream()>>>(dq, dout, lse, rowdot,
                                                                            p);
    TR_CUDA_LAUNCH_CHECK();
  }
};

// bf16: the mma.sync kernels, or the WMMA ones (TR_FLASH_KERNELS=wmma).
template <int DHP>
struct Launch<bfloat, DHP> {
  using Wmma = LaunchBf16<WmmaFamily<DHP>>;
  using Mma = LaunchBf16<MmaFamily<DHP>>;
  // The selected family's: the mma.sync kernels' fit heads of 128 within 99 KiB, the WMMA
  // ones' do not.
  static std::size_t largest_smem() {
    return wmma_kernels() ? Wmma::largest_smem() : Mma::largest_smem();
  }
  static void forward(bfloat* out, float* lse, const ProblemOf<bfloat>& p) {
    wmma_kernels() ? Wmma::forward(out, lse, p) : Mma::forward(out, lse, p);
  }
  static void backward(bfloat* dq, bfloat* dk, bfloat* dv, const bfloat* dout, const float* lse,
                       const float* rowdot, const ProblemOf<bfloat>& p) {
    wmma_kernels() ? Wmma::backward(dq, dk, dv, dout, lse, rowdot, p)
                   : Mma::backward(dq, dk, dv, dout, lse, rowdot, p);
  }
};

template <int DHP>
struct Launch<float, DHP> {
  static constexpr std::size_t largest_smem() {
    return std::max({f32_forward_smem<DHP>(), f32_dkdv_smem<DHP>(), f32_dq_smem<DHP>()});
  }
  static_assert(largest_smem() <= kLargestSmemOptIn, "flash attention: shared memory");
  static void forward(float* out, float* lse, const ProblemOf<float>& p) {
    constexpr std::size_t smem = f32_forward_smem<DHP>();
    allow_smem(flash_forward_f32_kernel<DHP>, smem);
    const Grid g = query_grid(p);
    flash_forward_f32_kernel<DHP>
        <<<dim3(g.x, g.y), kF32Threads, smem, compute_stream()>>>(out, lse, p);
    TR_CUDA_LAUNCH_CHECK();
  }
  static void backward(float* dq, float* dk, float* dv, const float* dout, const float* lse,
                       const float* rowdot, const ProblemOf<float>& p) {
    constexpr std::size_t dkdv_smem = f32_dkdv_smem<DHP>(), dq_smem = f32_dq_smem<DHP>();
    allow_smem(flash_dkdv_f32_kernel<DHP>, dkdv_smem);
    allow_smem(flash_dq_f32_kernel<DHP>, dq_smem);
    if (p.Tk > 0) {
      const Grid g = key_grid(p);
      flash_dkdv_f32_kernel<DHP><<<dim3(g.x, g.y), kF32Threads, dkdv_smem, compute_stream()>>>(
          dk, dv, dout, lse, rowdot, p);
      TR_CUDA_LAUNCH_CHECK();
    }
    const Grid g = query_grid(p);
    flash_dq_f32_kernel<DHP>
        <<<dim3(g.x, g.y), kF32Threads, dq_smem, compute_stream()>>>(dq, dout, lse, rowdot, p);
    TR_CUDA_LAUNCH_CHECK();
  }
};

template <typename E>
flash_storage_t<E>* storage(E* x) {
  return reinterpret_cast<flash_storage_t<E>*>(x);
}
template <typename E>
const flash_storage_t<E>* storage(const E* x) {
  return reinterpret_cast<const flash_storage_t<E>*>(x);
}

template <typename E>
void forward(E* out, float* lse, const E* q, const E* k, const E* v, const std::int32_t* kv_len,
             const std::uint8_t* keep_mask, float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh,
             bool causal, i64 q_offset) {
  if (B * H * Tq == 0) return;
  using S = flash_storage_t<E>;
  const ProblemOf<S> p = checked_problem(q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh,
                                         causal, q_offset, {out});
  S* o = storage(out);
  switch (padded_head_dim(Dh)) {
    case 16: Launch<S, 16>::forward(o, lse, p); break;
    case 32: Launch<S, 32>::forward(o, lse, p); break;
    case 64: Launch<S, 64>::forward(o, lse, p); break;
    default: Launch<S, 128>::forward(o, lse, p); break;
  }
}

template <typename E>
void backward(E* dq, E* dk, E* dv, const E* dout, const E* out, const float* lse, const E* q,
              const E* k, const E* v, const std::int32_t* kv_len, const std::uint8_t* keep_mask,
              float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal, i64 q_offset) {
  if (B * H == 0) return;
  if (Tq == 0) {  // no query: nothing reaches the keys
    if (Tk > 0) {
      TR_CUDA_CHECK(cudaMemsetAsync(dk, 0, sizeof(E) * B * Tk * H * Dh, compute_stream()));
      TR_CUDA_CHECK(cudaMemsetAsync(dv, 0, sizeof(E) * B * Tk * H * Dh, compute_stream()));
    }
    return;
  }
  using S = flash_storage_t<E>;
  const ProblemOf<S> p = checked_problem(q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh,
                                         causal, q_offset, {dq, dk, dv, dout, out});
  StreamScratch rowdot(sizeof(float) * B * H * Tq);
  row_dot_kernel<S><<<grid_for(B * H * Tq * 32), kThreads, 0, compute_stream()>>>(
      rowdot.as<float>(), storage(dout), storage(out), p);
  TR_CUDA_LAUNCH_CHECK();
  S *gq = storage(dq), *gk = storage(dk), *gv = storage(dv);
  const S* d = storage(dout);
  const float* r = rowdot.as<float>();
  switch (padded_head_dim(Dh)) {
    case 16: Launch<S, 16>::backward(gq, gk, gv, d, lse, r, p); break;
    case 32: Launch<S, 32>::backward(gq, gk, gv, d, lse, r, p); break;
    case 64: Launch<S, 64>::backward(gq, gk, gv, d, lse, r, p); break;
    default: Launch<S, 128>::backward(gq, gk, gv, d, lse, r, p); break;
  }
}

template <typename S>
std::size_t largest_smem(i64 Dh) {
  switch (padded_head_dim(Dh)) {
    case 16: return Launch<S, 16>::largest_smem();
    case 32: return Launch<S, 32>::largest_smem();
    case 64: return Launch<S, 64>::largest_smem();
    default: return Launch<S, 128>::largest_smem();
  }
}

}  // namespace

void set_flash_mma_kernels(bool on) {
  g_mma_kernels = on;
}

bool flash_mma_kernels() {
  return g_mma_kernels;
}

bool flash_attention_supported(bool bf16, i64 Dh) {
  if (Dh <= 0 || Dh > kFlashMaxHeadDim) return false;
  if (bf16 && compute_capability() < 80) return false;
  const std::size_t need = bf16 ? largest_smem<bfloat>(Dh) : largest_smem<float>(Dh);
  return need <= max_shared_memory_per_block();
}

void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                             float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                             i64 q_offset) {
  require_bf16_tensor_cores();
  forward(out, lse, q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh, causal, q_offset);
}

void flash_attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                             const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                             float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                             i64 q_offset) {
  forward(out, lse, q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh, causal, q_offset);
}

void flash_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out,
                              const float* lse, const bf16* q, const bf16* k, const bf16* v,
                              const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                              float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                              i64 q_offset) {
  require_bf16_tensor_cores();
  backward(dq, dk, dv, dout, out, lse, q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh,
           causal, q_offset);
}

void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                              const float* lse, const float* q, const float* k, const float* v,
                              const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                              float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                              i64 q_offset) {
  backward(dq, dk, dv, dout, out, lse, q, k, v, kv_len, keep_mask, keep_scale, B, H, Tq, Tk, Dh,
           causal, q_offset);
}

}  // namespace tr::cuda
