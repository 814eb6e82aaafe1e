// An fp64 evaluation of a recorded cuDNN operation graph (layers/cuda/cudnn/sdpa_graphs.h's
// Graph::tensors and Graph::ops) on the CPU, with cuDNN's meaning of each operation as the
// graphs use them:
// - every tensor is memory addressed through its strides, element (i0, i1, i2, i3) at
//   i0 s0 + i1 s1 + i2 s2 + i3 s3; a real tensor's memory is the caller's buffer, a virtual
//   one's its own;
// - matmul: C[b, h] = A[b, h] B[b, h] over the last two axes; the M, N and K overrides (a
//   [B, 1, 1, 1] tensor of lengths) cut each batch entry's rows, columns and inner sum, rows and
//   columns past them holding the padding value 0;
// - pointwise: inputs broadcast over their axes of extent 1; GEN_INDEX gives the element's
//   index along its axis, comparisons and LOGICAL_AND give 1 or 0, BINARY_SELECT(x, b, t) is
//   t ? x : b;
// - reduction: over the axes where the output has extent 1;
// - reshape: the output reads the input's memory through its own dimensions and strides;
// - rng: cuDNN's Philox draws cannot be reproduced here, so its output is the mask the test
//   binds with bind_rng (a test of the graph's mathematics given some mask).
// Data types are not modelled (everything is fp64): this checks what a graph computes, not how
// cuDNN rounds it.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <vector>

#include "layers/cuda/cudnn/sdpa_graphs.h"

namespace tr::cudnn::reference {

using Index = std::array<std::int64_t, 4>;

class Evaluator {
 public:
  explicit Evaluator(const Graph& graph) : graph_(graph) {
    for (const TensorRecord& t : graph.tensors) tensors_[t.uid].record = t;
  }

  // A real tensor's memory (read and written in place) or a scalar's value.
  void bind(std::int64_t uid, std::vector<double>* memory) { at(uid).memory = memory; }
  // What the graph's RNG operation (if any) draws: a [B, H, Tq, Tk] mask of 0 and 1, packed.
  void bind_rng(const std::vector<double>* mask, double expected_probability) {
    rng_mask_ = mask;
    rng_probability_ = expected_probability;
  }
  void bind_scalar(std::int64_t uid, double value) {
    Tensor& t = at(uid);
    t.own.assign(1, value);
    t.memory = &t.own;
  }

  void run() {
    for (auto& [uid, t] : tensors_) {
      if (t.record.is_virtual) {
        t.own.assign(static_cast<std::size_t>(span(t.record)), 0.0);
        t.memory = &t.own;
      }
      if (!t.memory) {
        ADD_FAILURE() << "graph tensor " << uid << " is not bound";
        return;
      }
    }
    for (const OpRecord& op : graph_.ops) {
      switch (op.kind) {
        case OpRecord::Kind::matmul: matmul(op); break;
        case OpRecord::Kind::pointwise: pointwise(op); break;
        case OpRecord::Kind::reduction: reduction(op); break;
        case OpRecord::Kind::reshape: at(op.out).own = *at(op.in[0]).memory; break;
        case OpRecord::Kind::rng: rng(op); break;
      }
    }
  }

 private:
  struct Tensor {
    TensorRecord record;
    std::vector<double>* memory = nullptr;
    std::vector<double> own;
  };

  Tensor& at(std::int64_t uid) {
    auto it = tensors_.find(uid);
    if (it == tensors_.end()) ADD_FAILURE() << "no tensor " << uid << " in the graph";
    return tensors_[uid];
  }
  static std::int64_t span(const TensorRecord& r) {
    std::int64_t s = 1;
    for (int k = 0; k < 4; ++k) s += (r.dims[k] - 1) * r.strides[k];
    return s;
  }
  // The element of `t` at `i`, its axes of extent 1 broadcast.
  static double& element(Tensor& t, const Index& i) {
    std::int64_t offset = 0;
    for (int k = 0; k < 4; ++k) offset += (t.record.dims[k] == 1 ? 0 : i[k]) * t.record.strides[k];
    return (*t.memory)[static_cast<std::size_t>(offset)];
  }
  template <typename F>
  static void for_each(const Index& dims, F&& f) {
    Index i{};
    for (i[0] = 0; i[0] < dims[0]; ++i[0])
      for (i[1] = 0; i[1] < dims[1]; ++i[1])
        for (i[2] = 0; i[2] < dims[2]; ++i[2])
          for (i[3] = 0; i[3] < dims[3]; ++i[3]) f(i);
  }
  // An override's length for batch entry b, or `full` without one.
  std::int64_t limit(std::int64_t uid, std::int64_t b, std::int64_t full) {
    if (uid == 0) return full;
    return static_cast<std::int64_t>(element(at(uid), {b, 0, 0, 0}));
  }

  void matmul(const OpRecord& op) {
    Tensor &a = at(op.in[0]), &b = at(op.in[1]), &c = at(op.out);
    const std::int64_t K = a.record.dims[3];
    EXPECT_EQ(b.record.dims[2], K) << "matmul inner dimensions";
    for_each(c.record.dims, [&](const Index& i) {
      const std::int64_t m = limit(op.m, i[0], c.record.dims[2]),
                         n = limit(op.n, i[0], c.record.dims[3]), k = limit(op.k, i[0], K);
      double sum = 0;
      if (i[2] < m && i[3] < n)
        for (std::int64_t kk = 0; kk < k; ++kk)
          sum += element(a, {i[0], i[1], i[2], kk}) * element(b, {i[0], i[1], kk, i[3]});
      element(c, i) = sum;
    });
  }

  void pointwise(const OpRecord& op) {
    Tensor& y = at(op.out);
    Tensor* x = &at(op.in[0]);
    Tensor* b = op.in[1] ? &at(op.in[1]) : nullptr;
    Tensor* t = op.in[2] ? &at(op.in[2]) : nullptr;
    const auto mode = static_cast<cudnnPointwiseMode_t>(op.mode);
    for_each(y.record.dims, [&](const Index& i) {
      const double xv = element(*x, i), bv = b ? element(*b, i) : 0.0;
      double v = 0;
      switch (mode) {
        case CUDNN_POINTWISE_ADD: v = xv + bv; break;
        case CUDNN_POINTWISE_SUB: v = xv - bv; break;
        case CUDNN_POINTWISE_MUL: v = xv * bv; break;
        case CUDNN_POINTWISE_DIV: v = xv / bv; break;
        case CUDNN_POINTWISE_EXP: v = std::exp(xv); break;
        case CUDNN_POINTWISE_LOG: v = std::log(xv); break;
        case CUDNN_POINTWISE_IDENTITY: v = xv; break;
        case CUDNN_POINTWISE_CMP_LT: v = xv < bv ? 1 : 0; break;
        case CUDNN_POINTWISE_CMP_GE: v = xv >= bv ? 1 : 0; break;
        case CUDNN_POINTWISE_LOGICAL_AND: v = (xv != 0 && bv != 0) ? 1 : 0; break;
        case CUDNN_POINTWISE_BINARY_SELECT: v = element(*t, i) != 0 ? xv : bv; break;
        case CUDNN_POINTWISE_GEN_INDEX: v = static_cast<double>(i[op.axis]); break;
        default: ADD_FAILURE() << "pointwise mode " << op.mode << " not modelled"; return;
      }
      element(y, i) = v;
    });
  }

  void reduction(const OpRecord& op) {
    Tensor &x = at(op.in[0]), &y = at(op.out);
    const bool max = op.mode == CUDNN_REDUCE_TENSOR_MAX;
    EXPECT_TRUE(max || op.mode == CUDNN_REDUCE_TENSOR_ADD) << "reduction " << op.mode;
    for_each(y.record.dims, [&](const Index& i) {
      element(y, i) = max ? -std::numeric_limits<double>::infinity() : 0.0;
    });
    for_each(x.record.dims, [&](const Index& i) {
      Index o = i;
      for (int k = 0; k < 4; ++k)
        if (y.record.dims[k] == 1) o[k] = 0;
      double& acc = element(y, o);
      acc = max ? std::max(acc, element(x, i)) : acc + element(x, i);
    });
  }

  void rng(const OpRecord& op) {
    if (!rng_mask_) {
      ADD_FAILURE() << "the graph draws a mask and none was bound (bind_rng)";
      return;
    }
    EXPECT_EQ(op.probability, rng_probability_) << "the RNG's keep probability";
    at(op.in[0]);  // the seed and offset are tensors of the graph
    at(op.in[1]);
    Tensor& y = at(op.out);
    const Index& d = y.record.dims;
    std::size_t packed = 0;
    for_each(d, [&](const Index& i) { element(y, i) = (*rng_mask_)[packed++]; });
    EXPECT_EQ(packed, rng_mask_->size()) << "the bound mask's size";
  }

  const Graph& graph_;
  std::map<std::int64_t, Tensor> tensors_;
  const std::vector<double>* rng_mask_ = nullptr;
  double rng_probability_ = 0;
};

}  // namespace tr::cudnn::reference
