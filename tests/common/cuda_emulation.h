// Runs CUDA kernel source on the CPU, so that CI (no GPU) can test a kernel's indexing, tiling,
// masking and synchronisation, not only its algorithm. Include this before a kernel header
// written for it (layers/cuda/*_kernels.cuh): every thread of a block is a fiber (its own
// stack, ucontext), the block's fibers take turns on the launching thread, switching at
// __syncthreads, __syncwarp and warp shuffles (barriers among the fibers); a shuffle goes
// through an exchange array between two warp barriers, and WMMA is plain C++. Fibers instead
// of std::threads: a launch of 512 blocks of 256 threads takes 0.2 s instead of 10 s.
//
// Order: a fiber runs until it waits at a barrier, then the next fiber of its warp runs; a warp
// runs as far as it gets (until all its threads wait at block barriers or have returned)
// before the next warp runs, so warps run ahead of each other as far as the block's barriers
// let them. Even-numbered blocks take their warps and lanes in order, odd-numbered ones in
// reverse, so that a read of another thread's write that lacks a barrier between them finds
// the write missing (or a later write already there) in one of the two orders, given two or
// more blocks. A barrier that can never complete (some threads wait at one the others never
// reach) aborts with a message instead of hanging. A thread that has returned is no longer
// waited for.
//
// Blocks run one after another, so `__shared__` arrays declared inside a kernel are function
// statics (one array for the block being run); they start as zeros, and a block finds the
// previous block's values in them. Dynamic shared memory (TR_DYNAMIC_SMEM) starts as 0xFF
// bytes in every block (NaN as float and as bf16), so a read of an element nobody wrote
// spreads NaN into the results.
//
// What it cannot show: timing, bank conflicts, register or shared-memory limits, alignment
// faults, and the order in which real lanes race (a missing barrier may still pass here; the
// GPU run's compute-sanitizer racecheck is for that).
//
// WMMA: a fragment holds the whole 16 x 16 tile in every lane. Loads fill it in every lane;
// each lane computes and stores only its own row (lanes 0-15), so the work is split as on the
// GPU and a store is complete only after the warp's next __syncwarp, as on the GPU.
//
// Names that CUDA's headers also define (__float2bfloat16_rn, make_float4, ...) are static
// functions here, or types of their own: they must never meet the CUDA library's symbols at
// link time.
#pragma once

#define TR_CUDA_EMULATION 1

#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "layers/cpu/bf16.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define TR_UNROLL
#define TR_UNROLL_4
#define TR_DYNAMIC_SMEM(name) unsigned char* name = ::tr::emu::dynamic_smem()

namespace tr::emu {

struct Dim3 {
  unsigned x, y, z;
  constexpr Dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// A barrier among a block's fibers (the whole block, or one warp).
struct Barrier {
  unsigned expected = 0, arrived = 0;
  std::uint64_t generation = 0;
  unsigned completed_with = 0;  // the threads the last completion counted (expected by then)
};

// Switching between fibers. On x86-64 (GCC, Clang) a stack switch of a few instructions saves
// the callee-saved registers and the floating-point control words on the stack being left
// (ten times faster than swapcontext, which makes a system call for the signal mask each
// time); elsewhere, or where the process runs with a CET shadow stack (a `ret` onto another
// stack would fault there), ucontext (or with TR_EMU_NO_FAST_SWITCH defined). Neither is known
// to AddressSanitizer.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(TR_EMU_NO_FAST_SWITCH)
#define TR_EMU_FAST_SWITCH 1
// Saves the registers on the current stack, stores its pointer in *save, continues on `to`.
[[maybe_unused]] __attribute__((naked, noinline)) static void tr_emu_switch_stack(
    void** /*save: rdi*/, void* /*to: rsi*/) {
  asm volatile(
      "pushq %rbp\n pushq %rbx\n pushq %r12\n pushq %r13\n pushq %r14\n pushq %r15\n"
      "subq $8, %rsp\n stmxcsr (%rsp)\n fnstcw 4(%rsp)\n"
      "movq %rsp, (%rdi)\n movq %rsi, %rsp\n"
      "ldmxcsr (%rsp)\n fldcw 4(%rsp)\n addq $8, %rsp\n"
      "popq %r15\n popq %r14\n popq %r13\n popq %r12\n popq %rbx\n popq %rbp\n ret\n");
}
#endif

// One CUDA thread: its context and stack (kept from launch to launch), its index.
struct Fiber {
  void* sp = nullptr;    // the fast switch's saved stack pointer
  ucontext_t context{};  // ucontext's
  void* stack = nullptr;
  Dim3 thread;
  unsigned linear = 0;  // x + y blockDim.x + z blockDim.x blockDim.y: lanes and warps
  bool done = true;
};

// What the threads of the block being run share.
struct Block {
  std::vector<unsigned char> smem;
  std::size_t dynamic_bytes = 0;  // the dynamic shared memory the launch asked for
  Barrier all;
  std::vector<Barrier> warps;
  std::vector<double> exchange;  // one slot per thread, for shuffles
  // One slot per thread for mma.sync's operand fragments (layers/cuda/mma.cuh).
  struct MmaFragments {
    std::uint32_t a[4], b[2];
  };
  std::vector<MmaFragments> mma;
  // One slot per thread for the row address it gives ldmatrix (layers/cuda/mma.cuh).
  std::vector<const void*> rows;
};

inline bool fast_switch_usable() {
#ifdef TR_EMU_FAST_SWITCH
  std::uint64_t ssp = 0;
  asm volatile("rdsspq %0" : "+r"(ssp));  // a no-op without a shadow stack
  return ssp == 0;
#else
  return false;
#endif
}

// The launching thread's fibers and the one running.
struct Scheduler {
  static constexpr std::size_t kStackBytes = 256 << 10;  // a guard page below each
  const bool fast = fast_switch_usable();
  void* main_sp = nullptr;
  ucontext_t main{};
  std::vector<std::unique_ptr<Fiber>> fibers;  // pointers: a ucontext_t must not move
  Fiber* current = nullptr;
  std::function<void()> body;
  std::uint64_t progress = 0;  // arrivals at barriers and returns: a pass without any is stuck

  ~Scheduler() {
    for (auto& f : fibers) munmap(f->stack, kStackBytes + 4096);
  }
  void reserve(unsigned threads) {
    while (fibers.size() < threads) {
      auto f = std::make_unique<Fiber>();
      void* mem = mmap(nullptr, kStackBytes + 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
      if (mem == MAP_FAILED) {
        std::fprintf(stderr, "cuda emulation: no memory for a fiber stack\n");
        std::abort();
      }
      mprotect(mem, 4096, PROT_NONE);  // overflow faults instead of corrupting a neighbour
      f->stack = mem;
      fibers.push_back(std::move(f));
      if (!fast) getcontext(&fibers.back()->context);
    }
  }
};

inline thread_local Dim3 t_thread, t_block, t_block_dim, t_grid_dim;
inline thread_local Block* t_current = nullptr;
inline thread_local Scheduler t_scheduler;

// Where a block's dynamic shared memory starts in its allocation: 128-byte aligned, as
// `extern __shared__ __align__(128)` promises.
inline std::size_t dynamic_smem_offset(const std::vector<unsigned char>& smem) {
  const auto base = reinterpret_cast<std::uintptr_t>(smem.data());
  return (128 - base % 128) % 128;
}
inline unsigned char* dynamic_smem() {
  return t_current->smem.data() + dynamic_smem_offset(t_current->smem);
}

// Under AddressSanitizer the bytes around a block's dynamic shared memory (the alignment
// padding before, the rest of the allocation after) are unaddressable, so that a kernel
// indexing past the shared memory its launch asked for is reported.
inline void fence_dynamic_smem(std::vector<unsigned char>& smem, std::size_t bytes) {
#if defined(__SANITIZE_ADDRESS__)
  const std::size_t offset = dynamic_smem_offset(smem);
  ASAN_POISON_MEMORY_REGION(smem.data(), offset);
  ASAN_POISON_MEMORY_REGION(smem.data() + offset + bytes, smem.size() - offset - bytes);
#else
  (void)smem, (void)bytes;
#endif
}
inline unsigned linear_thread() {
  return t_scheduler.current->linear;
}
inline unsigned lane() {
  return linear_thread() % 32;
}
inline unsigned warp() {
  return linear_thread() / 32;
}

// Back to the scheduler, which resumes the block's other fibers.
inline void yield() {
  Scheduler& s = t_scheduler;
  Fiber* self = s.current;
#ifdef TR_EMU_FAST_SWITCH
  if (s.fast) return tr_emu_switch_stack(&self->sp, s.main_sp);
#endif
  swapcontext(&self->context, &s.main);
}

inline void complete(Barrier& b) {
  b.completed_with = b.expected;
  b.arrived = 0;
  ++b.generation;
}
inline void wait(Barrier& b) {
  ++t_scheduler.progress;
  const std::uint64_t generation = b.generation;
  if (++b.arrived == b.expected) return complete(b);
  do yield();
  while (b.generation == generation);
}
// A returned thread: the barriers stop counting it.
inline void drop(Barrier& b) {
  --b.expected;
  if (b.arrived > 0 && b.arrived == b.expected) complete(b);
}

inline void sync_block() {
  wait(t_current->all);
}
inline void sync_warp() {
  wait(t_current->warps[warp()]);
}

// A warp collective over the full mask (shuffles, __syncwarp(), mma.sync.aligned, ldmatrix) with
// lanes of the warp already returned is undefined on a GPU (it may hang or read garbage); the
// emulation, whose warp barriers stop counting returned lanes, would go on: it aborts instead.
// Checked against the count of the collective's first warp barrier when it completed: every lane
// not returned by then was at it, whatever order the fibers ran in (a lane that runs on and
// returns before the others resume does not change it: the next completion needs them all).
inline void require_whole_warp(const char* what) {
  const unsigned threads = t_block_dim.x * t_block_dim.y * t_block_dim.z;
  const unsigned lanes = std::min(32u, threads - warp() * 32);
  const unsigned counted = t_current->warps[warp()].completed_with;
  if (counted == lanes) return;
  std::fprintf(stderr,
               "cuda emulation: %s in warp %u of block (%u, %u, %u) after %u of its %u lanes "
               "returned\n",
               what, warp(), t_block.x, t_block.y, t_block.z, lanes - counted, lanes);
  std::abort();
}

template <typename T>
T shuffle_xor(T value, int lane_mask) {
  double* slots = t_current->exchange.data() + warp() * 32;
  slots[lane()] = static_cast<double>(value);
  sync_warp();
  require_whole_warp("a shuffle");
  const T other = static_cast<T>(slots[lane() ^ static_cast<unsigned>(lane_mask)]);
  sync_warp();  // every lane has read before a next shuffle writes
  return other;
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 across the warp: every lane puts its A
// and B fragments in the warp's slots, then computes its own four elements of D = A B + C from
// all of them (PTX ISA's fragment layout: g = lane / 4, t = lane % 4; A row g and g + 8,
// columns 2t, 2t + 1 and the same + 8; B columns g, rows 2t, 2t + 1 and the same + 8; C rows g
// and g + 8, columns 2t, 2t + 1). The products are exact in fp32 (bf16 x bf16), summed in k
// order: the tensor cores' order of the additions may differ, by fp32 rounding.
inline float bf16_half(std::uint32_t pair, int high) {
  return cpu::bf16_bits_to_f32(static_cast<std::uint16_t>(high ? pair >> 16 : pair & 0xFFFFu));
}
inline void mma_m16n8k16(float c[4], const std::uint32_t a[4], const std::uint32_t b[2]) {
  Block::MmaFragments* slots = t_current->mma.data() + warp() * 32;
  Block::MmaFragments& mine = slots[lane()];
  std::copy(a, a + 4, mine.a);
  std::copy(b, b + 2, mine.b);
  sync_warp();
  require_whole_warp("mma.sync");
  // A[r][k] and B[k][n] from the lanes holding them.
  const auto A = [&](int r, int k) {
    const Block::MmaFragments& f = slots[(r % 8) * 4 + (k % 8) / 2];
    return bf16_half(f.a[(r / 8) + 2 * (k / 8)], k % 2);
  };
  const auto B = [&](int k, int n) {
    const Block::MmaFragments& f = slots[n * 4 + (k % 8) / 2];
    return bf16_half(f.b[k / 8], k % 2);
  };
  const int g = static_cast<int>(lane()) / 4, t = static_cast<int>(lane()) % 4;
  float d[4];
  for (int e = 0; e < 4; ++e) {
    const int r = g + 8 * (e / 2), n = 2 * t + e % 2;
    float sum = c[e];
    for (int k = 0; k < 16; ++k) sum += A(r, k) * B(k, n);
    d[e] = sum;
  }
  sync_warp();  // every lane has read the slots before a next mma writes them
  std::copy(d, d + 4, c);
}

// ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16 across the warp: lane 8i + r gives the
// address of row r of 8 x 8 matrix i (8 consecutive b16, 16-byte aligned, or the hardware
// faults: checked here); lane l receives in r[i] matrix i's row l / 4, elements 2(l % 4) and
// 2(l % 4) + 1 (the lower in the low half), or with .trans its column l / 4, rows 2(l % 4) and
// 2(l % 4) + 1. Lanes past 8 count give addresses the instruction ignores.
inline void ldmatrix(std::uint32_t* r, int count, bool trans, const void* row) {
  const void** slots = t_current->rows.data() + warp() * 32;
  slots[lane()] = row;
  sync_warp();
  require_whole_warp("ldmatrix");
  const int g = static_cast<int>(lane()) / 4, t = static_cast<int>(lane()) % 4;
  const auto element = [&](int matrix, int i, int j) {  // row i, column j of a matrix
    const void* at = slots[8 * matrix + i];
    if (reinterpret_cast<std::uintptr_t>(at) % 16 != 0) {
      std::fprintf(stderr, "cuda emulation: ldmatrix row address %p is not 16-byte aligned\n", at);
      std::abort();
    }
    // ldmatrix reads shared memory only (the kernels here have dynamic shared memory alone).
    const unsigned char* base = dynamic_smem();
    const auto* first = static_cast<const unsigned char*>(at);
    if (first < base || first + 16 > base + t_current->dynamic_bytes) {
      std::fprintf(stderr, "cuda emulation: ldmatrix row address %p is outside shared memory\n",
                   at);
      std::abort();
    }
    std::uint16_t v;
    std::memcpy(&v, static_cast<const unsigned char*>(at) + 2 * j, sizeof v);
    return static_cast<std::uint32_t>(v);
  };
  std::uint32_t out[4];
  for (int i = 0; i < count; ++i)
    out[i] = trans ? element(i, 2 * t, g) | element(i, 2 * t + 1, g) << 16
                   : element(i, g, 2 * t) | element(i, g, 2 * t + 1) << 16;
  sync_warp();  // every lane has read the addresses before a next ldmatrix writes them
  std::copy(out, out + count, r);
}

// A fiber's life: the kernel, then the barriers stop counting it.
inline void run_fiber() {
  Scheduler& s = t_scheduler;
  s.body();
  ++s.progress;
  s.current->done = true;
  drop(t_current->all);
  drop(t_current->warps[warp()]);
}
inline void fiber_entry() {
  run_fiber();
}  // returns to uc_link: the scheduler
#ifdef TR_EMU_FAST_SWITCH
[[noreturn]] inline void fast_fiber_entry() {
  run_fiber();
  yield();  // never resumed: the next block starts the fiber afresh
  __builtin_unreachable();
}
#endif

// Makes fiber f start at the kernel when next switched to.
inline void start(Fiber& f) {
  Scheduler& s = t_scheduler;
  char* base = static_cast<char*>(f.stack) + 4096;
#ifdef TR_EMU_FAST_SWITCH
  if (s.fast) {
    // The frame tr_emu_switch_stack pops: control words, six registers, the return address
    // (the entry), and a null return address for the entry, which starts as if called.
    const auto top =
        reinterpret_cast<std::uintptr_t>(base + Scheduler::kStackBytes) & ~std::uintptr_t{15};
    auto* frame = reinterpret_cast<std::uint64_t*>(top) - 9;
    std::fill(frame, frame + 9, std::uint64_t{0});
    frame[7] = reinterpret_cast<std::uint64_t>(&fast_fiber_entry);
    std::uint32_t control[2];
    asm volatile("stmxcsr %0\n fnstcw %1" : "=m"(control[0]), "=m"(control[1]));
    std::memcpy(frame, control, sizeof control);
    f.sp = frame;
    return;
  }
#endif
  f.context.uc_stack.ss_sp = base;
  f.context.uc_stack.ss_size = Scheduler::kStackBytes;
  f.context.uc_link = &s.main;
  makecontext(&f.context, fiber_entry, 0);
}

// Runs fiber f until it waits at a barrier or returns.
inline void resume(Fiber& f) {
  Scheduler& s = t_scheduler;
  s.current = &f;
  t_thread = f.thread;
#ifdef TR_EMU_FAST_SWITCH
  if (s.fast) return tr_emu_switch_stack(&s.main_sp, f.sp);
#endif
  swapcontext(&s.main, &f.context);
}

// kernel<<<grid, block, smem_bytes>>>(args...): blocks one after another, the threads of each
// as fibers taking turns (see the top of this file).
template <typename Kernel, typename... Args>
void launch(Dim3 grid, Dim3 block, std::size_t smem_bytes, Kernel kernel, Args... args) {
  Scheduler& s = t_scheduler;
  const unsigned threads = block.x * block.y * block.z;
  // The hardware's limits, which a launch past them fails with on every GPU: 1024 threads a
  // block, 227 KiB of dynamic shared memory (an H100's; less on others, flash_attention.cu),
  // grids of 1 to 2^31 - 1 x 65535 x 65535 blocks (an empty grid is an invalid configuration).
  if (threads == 0 || threads > 1024 || smem_bytes > 227 * 1024 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu) {
    std::fprintf(stderr,
                 "emulated launch beyond the hardware's limits: grid %u x %u x %u, %u threads, "
                 "%zu bytes of shared memory\n",
                 grid.x, grid.y, grid.z, threads, smem_bytes);
    std::abort();
  }
  s.reserve(threads);
  s.body = [&] { kernel(args...); };
  std::uint64_t block_number = 0;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx, ++block_number) {
        Block state;
        state.smem.assign(smem_bytes + 128, 0xFF);
        state.dynamic_bytes = smem_bytes;
        fence_dynamic_smem(state.smem, smem_bytes);
        state.all.expected = threads;
        for (unsigned w = 0; w * 32 < threads; ++w) {
          state.warps.emplace_back();
          state.warps.back().expected = std::min(32u, threads - w * 32);
        }
        state.exchange.assign(threads, 0.0);
        state.mma.assign(threads, Block::MmaFragments{});
        state.rows.assign(threads, nullptr);
        t_current = &state;
        t_block = {bx, by, bz};
        t_block_dim = block;
        t_grid_dim = grid;
        for (unsigned t = 0; t < threads; ++t) {
          Fiber& f = *s.fibers[t];
          f.thread = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
          f.linear = t;
          f.done = false;
          start(f);
        }
        // Warp by warp, each as far as it gets (until its threads all wait at block barriers
        // or have returned), in thread order or in reverse.
        const bool reverse = block_number % 2 == 1;
        const unsigned warps = static_cast<unsigned>(state.warps.size());
        for (unsigned live = threads; live > 0;) {
          const std::uint64_t before = s.progress;
          live = 0;
          for (unsigned wk = 0; wk < warps; ++wk) {
            const unsigned w = reverse ? warps - 1 - wk : wk;
            const unsigned first = w * 32, count = std::min(32u, threads - first);
            std::uint64_t warp_before;
            do {
              warp_before = s.progress;
              for (unsigned k = 0; k < count; ++k) {
                Fiber& f = *s.fibers[first + (reverse ? count - 1 - k : k)];
                if (!f.done) resume(f);
              }
            } while (s.progress != warp_before);
            for (unsigned k = 0; k < count; ++k) live += !s.fibers[first + k]->done;
          }
          if (live > 0 && s.progress == before) {
            std::fprintf(stderr,
                         "cuda emulation: block (%u, %u, %u) is stuck: its threads wait at "
                         "barriers that the others never reach\n",
                         bx, by, bz);
            std::abort();
          }
        }
        s.current = nullptr;
        t_current = nullptr;
      }
  s.body = nullptr;
}

}  // namespace tr::emu

using dim3 = ::tr::emu::Dim3;

#define threadIdx (::tr::emu::t_thread)
#define blockIdx (::tr::emu::t_block)
#define blockDim (::tr::emu::t_block_dim)
#define gridDim (::tr::emu::t_grid_dim)

static inline void __syncthreads() {
  ::tr::emu::sync_block();
}
// The kernels here synchronise and shuffle whole warps: a narrower mask is not emulated.
static inline void require_full_mask(unsigned mask) {
  if (mask == 0xffffffffu) return;
  std::fprintf(stderr, "cuda emulation: warp mask %#x: only full warps are emulated\n", mask);
  std::abort();
}
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
  require_full_mask(mask);
  ::tr::emu::sync_warp();
  ::tr::emu::require_whole_warp("__syncwarp");
}
template <typename T>
static T __shfl_xor_sync(unsigned mask, T value, int lane_mask) {
  require_full_mask(mask);
  return ::tr::emu::shuffle_xor(value, lane_mask);
}
[[noreturn]] static inline void __trap() {
  std::abort();
}
static constexpr int warpSize = 32;

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
struct alignas(16) float4 {
  float x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) {
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
