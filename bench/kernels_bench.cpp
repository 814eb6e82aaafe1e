// Google Benchmark microbenchmarks of the hot CPU kernels, on the shapes of the reference
// models (issue 7): ViT d 96..192, 50 tokens, batch 128; encoder-decoder d 256, d_ff 1024,
// 64 x 32 tokens, vocabulary 8000. fp32 throughout.
//
//   build/bench/kernels_bench [--benchmark_filter=attention]
// Thread count: OMP_NUM_THREADS (1 gives the per-core numbers).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "layers/cpu/kernels.h"

namespace {

using tr::cpu::i64;

std::vector<float> random_vector(i64 n, std::uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::uint64_t s = seed * 2654435761ull + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = lo + (hi - lo) * static_cast<float>(s >> 40) / static_cast<float>(1 << 24);
  }
  return v;
}

// ---- GEMM (linear layers: [N, in] x [out, in]^T) ----------------------------------------------
void BM_linear_gemm(benchmark::State& st) {
  const i64 N = st.range(0), in = st.range(1), out = st.range(2);
  auto x = random_vector(N * in, 1), w = random_vector(out * in, 2);
  std::vector<float> y(static_cast<std::size_t>(N * out));
  for (auto _ : st) {
    tr::cpu::gemm<float>(false, true, N, out, in, 1.f, x.data(), in, w.data(), in, 0.f, y.data(),
                         out);
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * N * in * out, benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_linear_gemm)
    ->Args({128 * 50, 96, 96})
    ->Args({128 * 50, 96, 384})
    ->Args({128 * 50, 384, 96})
    ->Args({128 * 50, 192, 192})
    ->Args({128 * 50, 192, 768})
    ->Args({64 * 32, 256, 1024})
    ->Args({64 * 32, 256, 8000})
    ->Args({2048, 2048, 2048});

// Linear forward with bias: fused (bias broadcast into y, GEMM with beta = 1, as
// ops::linear_forward does) when the last argument is 1, else GEMM (beta = 0) then bias_add.
void BM_linear_forward_bias(benchmark::State& st) {
  const i64 N = st.range(0), in = st.range(1), out = st.range(2);
  const bool fused = st.range(3) != 0;
  auto x = random_vector(N * in, 1), w = random_vector(out * in, 2), b = random_vector(out, 3);
  std::vector<float> y(static_cast<std::size_t>(N * out));
  for (auto _ : st) {
    if (fused) {
      tr::cpu::bias_fill<float>(y.data(), b.data(), N, out);
      tr::cpu::gemm<float>(false, true, N, out, in, 1.f, x.data(), in, w.data(), in, 1.f, y.data(),
                           out);
    } else {
      tr::cpu::gemm<float>(false, true, N, out, in, 1.f, x.data(), in, w.data(), in, 0.f, y.data(),
                           out);
      tr::cpu::bias_add<float>(y.data(), y.data(), b.data(), N, out);
    }
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * N * in * out, benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_linear_forward_bias)
    ->Args({128 * 50, 96, 96, 0})
    ->Args({128 * 50, 96, 96, 1})
    ->Args({128 * 50, 96, 384, 0})
    ->Args({128 * 50, 96, 384, 1});

// ---- elementwise -------------------------------------------------------------------------------
void BM_gelu_forward(benchmark::State& st) {
  const i64 n = st.range(0);
  auto x = random_vector(n, 4, -4.f, 4.f);
  std::vector<float> y(static_cast<std::size_t>(n));
  for (auto _ : st) {
    tr::cpu::gelu_forward<float>(y.data(), x.data(), n);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * n);
}
BENCHMARK(BM_gelu_forward)->Arg(128 * 50 * 384);

// Second argument 1: from the forward output (the FeedForward path), 0: erf evaluated again.
void BM_gelu_backward(benchmark::State& st) {
  const i64 n = st.range(0);
  const bool from_out = st.range(1) != 0;
  auto x = random_vector(n, 4, -4.f, 4.f), g = random_vector(n, 5);
  std::vector<float> y(static_cast<std::size_t>(n)), a(static_cast<std::size_t>(n));
  tr::cpu::gelu_forward<float>(a.data(), x.data(), n);
  for (auto _ : st) {
    tr::cpu::gelu_backward<float>(y.data(), g.data(), x.data(), n, from_out ? a.data() : nullptr);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * n);
}
BENCHMARK(BM_gelu_backward)->Args({128 * 50 * 384, 0})->Args({128 * 50 * 384, 1});

void BM_bias_backward(benchmark::State& st) {
  const i64 rows = st.range(0), cols = st.range(1);
  auto g = random_vector(rows * cols, 6);
  std::vector<float> db(static_cast<std::size_t>(cols));
  for (auto _ : st) {
    tr::cpu::bias_backward_accumulate<float>(db.data(), g.data(), rows, cols);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * rows * cols);
}
BENCHMARK(BM_bias_backward)->Args({128 * 50, 96})->Args({128 * 50, 384});

// ---- LayerNorm ---------------------------------------------------------------------------------
void BM_layernorm_forward(benchmark::State& st) {
  const i64 rows = st.range(0), cols = st.range(1);
  auto x = random_vector(rows * cols, 7), w = random_vector(cols, 8), b = random_vector(cols, 9);
  std::vector<float> y(static_cast<std::size_t>(rows * cols)), mean(rows), rstd(rows);
  for (auto _ : st) {
    tr::cpu::layernorm_forward<float>(y.data(), mean.data(), rstd.data(), x.data(), w.data(),
                                      b.data(), rows, cols, 1e-5f);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * rows * cols);
}
BENCHMARK(BM_layernorm_forward)->Args({128 * 50, 96})->Args({128 * 50, 192})->Args({64 * 32, 256});

void BM_layernorm_backward(benchmark::State& st) {
  const i64 rows = st.range(0), cols = st.range(1);
  auto x = random_vector(rows * cols, 7), w = random_vector(cols, 8), b = random_vector(cols, 9);
  auto g = random_vector(rows * cols, 10);
  std::vector<float> y(static_cast<std::size_t>(rows * cols)), mean(rows), rstd(rows);
  std::vector<float> dx(static_cast<std::size_t>(rows * cols)), dw(cols), db(cols);
  tr::cpu::layernorm_forward<float>(y.data(), mean.data(), rstd.data(), x.data(), w.data(),
                                    b.data(), rows, cols, 1e-5f);
  for (auto _ : st) {
    tr::cpu::layernorm_backward<float>(dx.data(), dw.data(), db.data(), g.data(), x.data(),
                                       w.data(), mean.data(), rstd.data(), rows, cols);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * rows * cols);
}
BENCHMARK(BM_layernorm_backward)->Args({128 * 50, 96})->Args({128 * 50, 192})->Args({64 * 32, 256});

// ---- attention ---------------------------------------------------------------------------------
// Args: B, H, T, Dh, causal, dropout(0/1)
void BM_attention_forward(benchmark::State& st) {
  const i64 B = st.range(0), H = st.range(1), T = st.range(2), Dh = st.range(3);
  const bool causal = st.range(4) != 0, drop = st.range(5) != 0;
  const i64 d = H * Dh;
  auto q = random_vector(B * T * d, 11), k = random_vector(B * T * d, 12),
       v = random_vector(B * T * d, 13);
  std::vector<float> out(static_cast<std::size_t>(B * T * d)),
      probs(static_cast<std::size_t>(B * H * T * T));
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(B * H * T * T));
  tr::cpu::dropout_mask(keep.data(), static_cast<i64>(keep.size()), 0.1f, 1, 2, 0);
  std::vector<std::int32_t> len(static_cast<std::size_t>(B));
  for (i64 b = 0; b < B; ++b) len[b] = static_cast<std::int32_t>(T - b % (T / 2));
  for (auto _ : st) {
    tr::cpu::attention_forward<float>(out.data(), probs.data(), q.data(), k.data(), v.data(),
                                      len.data(), drop ? keep.data() : nullptr, 1.f / 0.9f, B, H, T,
                                      T, Dh, causal, 0);
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(4.0 * B * H * T * T * Dh, benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_attention_forward)
    ->Args({128, 4, 50, 24, 0, 0})
    ->Args({128, 4, 50, 48, 0, 1})
    ->Args({128, 3, 50, 64, 0, 0})
    ->Args({64, 4, 32, 64, 0, 1})
    ->Args({64, 4, 32, 64, 1, 1});

void BM_attention_backward(benchmark::State& st) {
  const i64 B = st.range(0), H = st.range(1), T = st.range(2), Dh = st.range(3);
  const bool causal = st.range(4) != 0, drop = st.range(5) != 0;
  const i64 d = H * Dh;
  auto q = random_vector(B * T * d, 11), k = random_vector(B * T * d, 12),
       v = random_vector(B * T * d, 13), g = random_vector(B * T * d, 14);
  std::vector<float> out(static_cast<std::size_t>(B * T * d)),
      probs(static_cast<std::size_t>(B * H * T * T)), scratch(probs.size());
  std::vector<float> dq(out.size()), dk(out.size()), dv(out.size());
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(B * H * T * T));
  tr::cpu::dropout_mask(keep.data(), static_cast<i64>(keep.size()), 0.1f, 1, 2, 0);
  std::vector<std::int32_t> len(static_cast<std::size_t>(B));
  for (i64 b = 0; b < B; ++b) len[b] = static_cast<std::int32_t>(T - b % (T / 2));
  tr::cpu::attention_forward<float>(out.data(), probs.data(), q.data(), k.data(), v.data(),
                                    len.data(), drop ? keep.data() : nullptr, 1.f / 0.9f, B, H, T,
                                    T, Dh, causal, 0);
  for (auto _ : st) {
    tr::cpu::attention_backward<float>(dq.data(), dk.data(), dv.data(), scratch.data(), g.data(),
                                       probs.data(), q.data(), k.data(), v.data(),
                                       drop ? keep.data() : nullptr, 1.f / 0.9f, B, H, T, T, Dh);
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(8.0 * B * H * T * T * Dh, benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_attention_backward)
    ->Args({128, 4, 50, 24, 0, 0})
    ->Args({128, 4, 50, 48, 0, 1})
    ->Args({128, 3, 50, 64, 0, 0})
    ->Args({64, 4, 32, 64, 0, 1})
    ->Args({64, 4, 32, 64, 1, 1});

// ---- cross entropy (encoder-decoder output: 2048 rows x 8000) ----------------------------------
void BM_cross_entropy(benchmark::State& st) {
  const i64 N = st.range(0), V = st.range(1);
  auto logits = random_vector(N * V, 15, -5.f, 5.f);
  std::vector<std::int32_t> t(static_cast<std::size_t>(N));
  for (i64 n = 0; n < N; ++n) t[n] = static_cast<std::int32_t>((n * 7919) % V);
  std::vector<float> loss(N), lse(N), dlogits(static_cast<std::size_t>(N * V));
  for (auto _ : st) {
    benchmark::DoNotOptimize(tr::cpu::cross_entropy_forward<float>(
        loss.data(), lse.data(), logits.data(), t.data(), N, V, 0.1f, -1));
    tr::cpu::cross_entropy_backward<float>(dlogits.data(), logits.data(), lse.data(), t.data(), N,
                                           V, 0.1f, -1, 1.f / N);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * N * V);
}
BENCHMARK(BM_cross_entropy)->Args({64 * 32, 8000})->Args({128, 10});

// ---- dropout and optimizer -------------------------------------------------------------------
void BM_dropout_mask(benchmark::State& st) {
  const i64 n = st.range(0);
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(n));
  for (auto _ : st) {
    tr::cpu::dropout_mask(keep.data(), n, 0.1f, 1, 2, 0);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * n);
}
BENCHMARK(BM_dropout_mask)->Arg(64 * 4 * 32 * 32)->Arg(64 * 32 * 256);

void BM_adamw(benchmark::State& st) {
  const i64 n = st.range(0);
  auto p = random_vector(n, 16), g = random_vector(n, 17);
  std::vector<float> m(static_cast<std::size_t>(n)), v(static_cast<std::size_t>(n));
  i64 step = 0;
  for (auto _ : st) {
    tr::cpu::adamw_update<float>(p.data(), g.data(), m.data(), v.data(), n, 1e-4f, 0.9f, 0.999f,
                                 1e-8f, 0.05f, ++step);
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * n);
}
BENCHMARK(BM_adamw)->Arg(1 << 16)->Arg(8000 * 256);

}  // namespace

BENCHMARK_MAIN();
