// The CUDA embedding kernels (layers/cuda/embedding_kernels.cuh: lookups of a whole table and
// of a vocabulary shard, the gradient by row-owning blocks) and the vocabulary-parallel cross
// entropy's passes (layers/cuda/shard_kernels.cuh), compiled for the host and run under
// tests/common/cuda_emulation.h with the launches' geometry (the gradient's 512 blocks of 256
// threads included), against the CPU kernels (layers/cpu/kernels.h): 1e-5 relative. Shapes:
// ids in several chunks of a block's 256 (the last one partial) with repeated ids, table rows
// beyond the 512 blocks (blocks owning two rows), rows wider and narrower than a block, ids
// outside the shard, padding columns and targets on other ranks, ignored rows. Overwritten
// outputs start as NaN; accumulated ones from random values.
#include "common/cuda_emulation.h"
// (the emulation first: the kernel headers compile against it)
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "common/emulated_kernels.h"
#include "layers/cpu/kernels.h"
#include "layers/cuda/embedding_kernels.cuh"
#include "layers/cuda/shard_kernels.cuh"

namespace tr {
namespace {

using namespace emu_test;
namespace em = cuda::embed;
namespace vo = cuda::vocab;
using Ids = std::vector<std::int32_t>;
using D = std::vector<double>;

constexpr double kTol = 1e-5;

// ids in [lo, hi), with runs of repeats.
Ids random_ids(i64 n, std::int32_t lo, std::int32_t hi, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> dist(lo, hi - 1);
  Ids ids(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) ids[i] = i % 7 == 3 ? ids[i - 1] : dist(rng);
  return ids;
}

// embedding_rows_backward (embedding_grad.cuh).
void rows_backward(float* dtable, const Ids& ids, const F& dout, i64 N, i64 d, i64 first,
                   i64 V_local, float scale) {
  emu::launch(em::kEmbeddingGradBlocks, cuda::kThreads, 0, em::embedding_rows_backward_kernel,
              dtable, ids.data(), dout.data(), N, d, first, V_local, scale);
}

struct Table {
  i64 N, V, d;
};

TEST(EmulatedEmbeddingKernels, WholeTable) {
  // 600 ids: chunks of 256, 256 and 88; 700 rows: blocks 0-187 own two; widths below and
  // above the block's 256 threads.
  for (const Table t : {Table{600, 700, 40}, Table{37, 50, 300}, Table{5, 3, 1}}) {
    const Ids ids = random_ids(t.N, 0, static_cast<std::int32_t>(t.V), 1);
    const F table = random_floats(t.V * t.d, 2), dout = random_floats(t.N * t.d, 3),
            dtable0 = random_floats(t.V * t.d, 4);
    F out(t.N * t.d), dtable = dtable0;
    cpu::embedding_forward<float>(out.data(), ids.data(), table.data(), t.N, t.d, 1.5f);
    cpu::embedding_backward_accumulate<float>(dtable.data(), ids.data(), dout.data(), t.N, t.d,
                                              1.5f);
    F kout = poison(t.N * t.d), kdtable = dtable0;
    emu::launch(cuda::grid_for_rows(t.N), cuda::kThreads, 0, em::embedding_forward_kernel,
                kout.data(), ids.data(), table.data(), t.N, t.d, 1.5f);
    // elementwise.cu: the whole table is a shard from 0 with no upper bound.
    rows_backward(kdtable.data(), ids, dout, t.N, t.d, 0, std::numeric_limits<i64>::max(), 1.5f);
    EXPECT_LE(max_rel_error(kout, out), kTol) << t.N << " ids, width " << t.d;
    EXPECT_LE(max_rel_error(kdtable, dtable), kTol) << t.N << " ids, width " << t.d;
  }
}

TEST(EmulatedEmbeddingKernels, VocabularyShard) {
  // Rows [first, first + V_local) of a vocabulary of V; ids all over it.
  for (const Table t : {Table{300, 1400, 33}, Table{20, 40, 260}}) {
    const i64 V_local = t.V / 2, first = t.V / 4;
    const Ids ids = random_ids(t.N, 0, static_cast<std::int32_t>(t.V), 5);
    const F table = random_floats(V_local * t.d, 6), dout = random_floats(t.N * t.d, 7),
            dtable0 = random_floats(V_local * t.d, 8);
    F out(t.N * t.d), dtable = dtable0;
    cpu::embedding_forward_shard<float>(out.data(), ids.data(), table.data(), t.N, t.d, first,
                                        V_local, 0.5f);
    cpu::embedding_backward_shard_accumulate<float>(dtable.data(), ids.data(), dout.data(), t.N,
                                                    t.d, first, V_local, 0.5f);
    F kout = poison(t.N * t.d), kdtable = dtable0;
    emu::launch(cuda::grid_for_rows(t.N), cuda::kThreads, 0, em::embedding_forward_shard_kernel,
                kout.data(), ids.data(), table.data(), t.N, t.d, first, V_local, 0.5f);
    rows_backward(kdtable.data(), ids, dout, t.N, t.d, first, V_local, 0.5f);
    EXPECT_LE(max_rel_error(kout, out), kTol) << t.N << " ids, width " << t.d;
    EXPECT_LE(max_rel_error(kdtable, dtable), kTol) << t.N << " ids, width " << t.d;
  }
}

// ---- the vocabulary-parallel cross entropy ---------------------------------------------------

struct Logits {
  i64 N, V_local, valid, first, V;
};

TEST(EmulatedEmbeddingKernels, CrossEntropyShardPasses) {
  const std::int32_t ignore = -100;
  // Local columns wider than a block with padding; a narrow shard; a rank without valid columns.
  for (const Logits s :
       {Logits{6, 300, 290, 1000, 2000}, Logits{5, 37, 37, 0, 74}, Logits{3, 8, 0, 64, 64}}) {
    const i64 N = s.N, n = N * s.V_local;
    const F logits = random_floats(n, 11, -6.0f, 6.0f);
    Ids targets(N);
    for (i64 r = 0; r < N; ++r)  // targets inside this shard and on other ranks
      targets[r] =
          static_cast<std::int32_t>(r % 2 == 0 ? s.first + (r * 13) % std::max<i64>(s.valid, 1)
                                               : (s.first + s.V_local + r) % s.V);
    targets[1] = ignore;
    D row_max(N), sums(3 * N), lse(N);
    cpu::ce_shard_max<float>(row_max.data(), logits.data(), N, s.V_local, s.valid);
    cpu::ce_shard_sums<float>(sums.data(), logits.data(), targets.data(), row_max.data(), N,
                              s.V_local, s.valid, s.first, ignore);
    // The group's log-sum-exp, as if this rank held every valid column (finite for every row).
    for (i64 r = 0; r < N; ++r)
      lse[r] = s.valid > 0 ? row_max[r] + std::log(std::max(sums[r], 1e-300)) : 0.5 * r;
    F dlogits(n);
    cpu::ce_shard_backward<float>(dlogits.data(), logits.data(), lse.data(), targets.data(), N,
                                  s.V_local, s.valid, s.first, s.V, 0.1f, ignore, 0.25f);

    D kmax(N, NAN), ksums(3 * N, NAN);
    emu::launch(vo::row_grid(N), vo::kRowThreads, 0, vo::ce_shard_max_kernel, kmax.data(),
                logits.data(), s.V_local, s.valid);
    emu::launch(vo::row_grid(N), vo::kRowThreads, 0, vo::ce_shard_sums_kernel, ksums.data(),
                logits.data(), targets.data(), static_cast<const double*>(row_max.data()), N,
                s.V_local, s.valid, s.first, ignore);
    // ce_shard_backward's constants, as shard.cu forms them; the gradient in place of the
    // logits, as the model computes it.
    const double smooth = static_cast<double>(0.1f) / static_cast<double>(s.V),
                 hit = 1.0 - static_cast<double>(0.1f);
    F kdlogits = logits;
    emu::launch(vo::row_grid(N), vo::kRowThreads, 0, vo::ce_shard_backward_kernel, kdlogits.data(),
                static_cast<const float*>(kdlogits.data()), static_cast<const double*>(lse.data()),
                targets.data(), s.V_local, s.valid, s.first, smooth, hit, ignore,
                static_cast<double>(0.25f));
    const auto label = ::testing::Message() << N << " x " << s.V_local << ", valid " << s.valid;
    if (s.valid > 0) {
      EXPECT_LE(max_rel_error(kmax, row_max), kTol) << label;
    } else {
      for (const double m : kmax) EXPECT_EQ(m, -INFINITY) << label;
    }
    EXPECT_LE(max_rel_error(ksums, sums), kTol) << label;
    EXPECT_LE(max_rel_error(kdlogits, dlogits), kTol) << label;
  }
}

}  // namespace
}  // namespace tr
