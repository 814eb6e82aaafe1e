// What cuDNN's attention graphs compute (layers/cuda/cudnn/sdpa_graphs.cpp), evaluated in fp64 on
// the CPU from their records (tests/cudnn/graph_reference.h), against the flash kernels' CPU
// twin (layers/cpu/kernels.h, fp64) on the same projections: the forward's output and
// statistics (the lse the own backward reads), and the backward's three gradients, for every
// combination of padding, causal mask and dropout, cross-attention and a head width of 16, and
// with the dropout mask drawn by the graph's own RNG (Philox) instead of read.
// This checks the graphs' mathematics without cuDNN or a GPU: K^T and V^T as strides of the
// [B, T, H*Dh] projections, the masks' comparisons, Stats = max + log sum exp, P * mask * scale,
// the row sums divided by the dropout scale (bound both ways: the graph's factor, and the
// runtime's O / keep_scale with a factor of 1), dS's scaling, and the padded keys' rows of dK and
// dV. cuDNN still has to run them as written (tests/gpu/test_cuda_cudnn_attention.cpp): it does
// not quite (the backward's factor is not read), which is why the runtime binds the second way.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <random>
#include <vector>

#include "common/error_measures.h"
#include "cudnn/graph_reference.h"
#include "layers/cpu/kernels.h"
#include "layers/cuda/cudnn/sdpa_graphs.h"

namespace tr::cudnn {

void PrintTo(const SdpaShape& s, std::ostream* os) {
  *os << to_string(s);
}

namespace {

using testing::max_error_to_largest;
using V = std::vector<double>;

V random_values(std::int64_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-2.0, 2.0);
  V v(static_cast<std::size_t>(n));
  for (double& x : v) x = dist(rng);
  return v;
}

struct Problem {
  SdpaShape s;
  V q, k, v, dout;
  std::vector<std::int32_t> kv_len;  // empty without padding
  std::vector<std::uint8_t> keep;    // empty without dropout
  double keep_scale = 1.0;

  explicit Problem(const SdpaShape& shape) : s(shape) {
    const std::int64_t d = s.H * s.Dh;
    q = random_values(s.B * s.Tq * d, 1);
    k = random_values(s.B * s.Tk * d, 2);
    v = random_values(s.B * s.Tk * d, 3);
    dout = random_values(s.B * s.Tq * d, 4);
    if (s.padding)
      for (std::int64_t b = 0; b < s.B; ++b)  // every sequence keeps a key
        kv_len.push_back(static_cast<std::int32_t>(std::max<std::int64_t>(1, s.Tk - 3 * b)));
    if (s.dropout) {
      const double keep_probability = s.philox_keep > 0 ? s.philox_keep : 0.8;
      std::mt19937 rng(5);
      std::bernoulli_distribution kept(keep_probability);
      keep.resize(static_cast<std::size_t>(s.B * s.H * s.Tq * s.Tk));
      for (auto& x : keep) x = kept(rng);
      keep_scale = 1.0 / keep_probability;
    }
  }
  const std::int32_t* lens() const { return kv_len.empty() ? nullptr : kv_len.data(); }
  const std::uint8_t* mask() const { return keep.empty() ? nullptr : keep.data(); }

  // The CPU twin's forward: out and lse.
  void cpu_forward(V& out, V& lse) const {
    out.assign(q.size(), 0.0);
    lse.assign(static_cast<std::size_t>(s.B * s.H * s.Tq), 0.0);
    cpu::flash_attention_forward<double>(out.data(), lse.data(), q.data(), k.data(), v.data(),
                                         lens(), mask(), keep_scale, s.B, s.H, s.Tq, s.Tk, s.Dh,
                                         s.causal, 0);
  }

  // The bindings both graphs share.
  void bind_common(reference::Evaluator& e, V& q_, V& k_, V& v_, V& seq_q, V& seq_kv,
                   V& mask_values) const {
    e.bind(kQ, &q_);
    e.bind(kK, &k_);
    e.bind(kV, &v_);
    e.bind_scalar(kScale, 1.0 / std::sqrt(static_cast<double>(s.Dh)));
    if (s.padding || s.causal) e.bind_scalar(kNegInf, -INFINITY);
    if (s.padding) {
      seq_q.assign(static_cast<std::size_t>(s.B), static_cast<double>(s.Tq));
      seq_kv.assign(kv_len.begin(), kv_len.end());
      e.bind(kSeqLenQ, &seq_q);
      e.bind(kSeqLenKv, &seq_kv);
    }
    if (s.dropout) {
      mask_values.assign(keep.begin(), keep.end());
      if (s.philox_keep > 0) {  // the RNG's draws stand in for by the same mask
        e.bind_rng(&mask_values, s.philox_keep);
        e.bind_scalar(kDropoutSeed, 1234);
        e.bind_scalar(kDropoutOffset, 0);
      } else {
        e.bind(kDropoutMask, &mask_values);
      }
      e.bind_scalar(kDropoutScale, keep_scale);
    }
  }
};

class CudnnGraphSemantics : public ::testing::TestWithParam<SdpaShape> {
 protected:
  void SetUp() override {
    if (!api()) GTEST_SKIP() << "cuDNN not loadable: " << unavailable_reason();
  }
};

TEST_P(CudnnGraphSemantics, ForwardEqualsTheCpuTwin) {
  const Problem p(GetParam());
  const SdpaShape& s = p.s;
  V out, lse;
  p.cpu_forward(out, lse);

  const Graph graph = sdpa_forward_graph(s);
  reference::Evaluator e(graph);
  V q = p.q, k = p.k, v = p.v, seq_q, seq_kv, mask;
  V o(out.size(), NAN), stats(lse.size(), NAN);
  p.bind_common(e, q, k, v, seq_q, seq_kv, mask);
  e.bind(kO, &o);
  e.bind(kStats, &stats);
  e.run();
  EXPECT_LE(max_error_to_largest(o, out), 1e-12);
  EXPECT_LE(max_error_to_largest(stats, lse), 1e-12);
}

TEST_P(CudnnGraphSemantics, BackwardEqualsTheCpuTwin) {
  const Problem p(GetParam());
  const SdpaShape& s = p.s;
  V out, lse;
  p.cpu_forward(out, lse);
  V dq(p.q.size()), dk(p.k.size()), dv(p.v.size());
  cpu::flash_attention_backward<double>(dq.data(), dk.data(), dv.data(), p.dout.data(), out.data(),
                                        lse.data(), p.q.data(), p.k.data(), p.v.data(), p.lens(),
                                        p.mask(), p.keep_scale, s.B, s.H, s.Tq, s.Tk, s.Dh,
                                        s.causal, 0);

  const Graph graph = sdpa_backward_graph(s);
  // Two bindings: the graph's own form (O, row sums scaled by 1 / keep_scale) and the runtime's
  // (O / keep_scale, a factor of 1: cuDNN's engine reads the sums without the graph's factor).
  struct Binding {
    const char* name;
    double o_factor, sum_factor;
  };
  for (const Binding b : {Binding{"graph's form", 1.0, 1.0 / p.keep_scale},
                          Binding{"runtime's form", 1.0 / p.keep_scale, 1.0}}) {
    SCOPED_TRACE(b.name);
    reference::Evaluator e(graph);
    V q = p.q, k = p.k, v = p.v, seq_q, seq_kv, mask, d_o = p.dout, o = out, stats = lse;
    for (double& x : o) x *= b.o_factor;
    V gq(dq.size(), NAN), gk(dk.size(), NAN), gv(dv.size(), NAN),
        row_sums(static_cast<std::size_t>(s.B * s.H * s.Tq), NAN);
    p.bind_common(e, q, k, v, seq_q, seq_kv, mask);
    e.bind(kO, &o);
    e.bind(kDO, &d_o);
    e.bind(kStats, &stats);
    e.bind(kDQ, &gq);
    e.bind(kDK, &gk);
    e.bind(kDV, &gv);
    e.bind(kSoftmaxSum, &row_sums);
    e.bind_scalar(kDropoutScaleInv, b.sum_factor);
    e.run();
    EXPECT_LE(max_error_to_largest(gq, dq), 1e-12);
    EXPECT_LE(max_error_to_largest(gk, dk), 1e-12);
    EXPECT_LE(max_error_to_largest(gv, dv), 1e-12);
  }
}

std::vector<SdpaShape> shapes() {
  std::vector<SdpaShape> out;
  for (int bits = 0; bits < 8; ++bits)  // every combination of padding, causal and dropout
    out.push_back({2, 2, 7, 7, 8, (bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0});
  out.push_back({2, 3, 5, 9, 16, true, false, true});  // cross-attention, wider heads
  out.push_back({1, 2, 9, 4, 8, false, true, false});  // more queries than keys, causal
  // The mask drawn by cuDNN's RNG (given here as a mask of its keep probability).
  out.push_back({2, 2, 7, 7, 8, true, false, true, 0.75});
  out.push_back({2, 2, 7, 7, 8, false, true, true, 0.75});
  out.push_back({2, 3, 5, 9, 16, true, false, true, 0.9});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudnnGraphSemantics, ::testing::ValuesIn(shapes()));

}  // namespace
}  // namespace tr::cudnn
