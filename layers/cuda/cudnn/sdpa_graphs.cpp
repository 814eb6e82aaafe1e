#include "layers/cuda/cudnn/sdpa_graphs.h"

#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <tuple>

namespace tr::cudnn {

bool SdpaShape::operator<(const SdpaShape& o) const {
  return std::tie(B, H, Tq, Tk, Dh, padding, causal, dropout, philox_keep) <
         std::tie(o.B, o.H, o.Tq, o.Tk, o.Dh, o.padding, o.causal, o.dropout, o.philox_keep);
}

std::string to_string(const SdpaShape& s) {
  return "[B " + std::to_string(s.B) + ", H " + std::to_string(s.H) + ", Tq " +
         std::to_string(s.Tq) + ", Tk " + std::to_string(s.Tk) + ", Dh " + std::to_string(s.Dh) +
         (s.padding ? ", padded" : "") + (s.causal ? ", causal" : "") +
         (s.dropout ? ", dropout" : "") +
         (s.dropout && s.philox_keep > 0 ? " (Philox, keep " + std::to_string(s.philox_keep) + ")"
                                         : "") +
         "]";
}

namespace {

using Dims = std::array<std::int64_t, 4>;

// Builds one operation graph: tensors and operations are created in `graph.parts` (stable
// addresses) and the operations listed for the graph descriptor.
class Builder {
 public:
  Builder(Graph& graph, cudnnHandle_t handle) : graph_(graph), handle_(handle) {}

  // A tensor the caller binds (uid from Uid) or, with uid 0, a virtual one of the graph.
  const Descriptor& tensor(std::int64_t uid, const Dims& dims, const Dims& strides,
                           cudnnDataType_t type) {
    const bool is_virtual = uid == 0;
    if (is_virtual) uid = next_virtual_++;
    return described({uid, dims, strides, type, is_virtual, false});
  }
  const Descriptor& virtual_tensor(const Dims& dims, const Dims& strides, cudnnDataType_t type) {
    return tensor(0, dims, strides, type);
  }
  // A scalar passed by value (a host pointer in the variant pack): float, or int64 (seeds).
  const Descriptor& scalar(std::int64_t uid, cudnnDataType_t type = CUDNN_DATA_FLOAT) {
    const Dims ones = {1, 1, 1, 1};
    return described({uid, ones, ones, type, false, true});
  }

  // y = Bernoulli draws (1 with `probability`) from cuDNN's Philox RNG keyed by the seed and
  // offset tensors, one per element of y.
  void rng(double probability, const Descriptor& seed, const Descriptor& offset,
           const Descriptor& y) {
    Descriptor& r = graph_.parts.emplace_back(CUDNN_BACKEND_RNG_DESCRIPTOR);
    const cudnnRngDistribution_t bernoulli = CUDNN_RNG_DISTRIBUTION_BERNOULLI;
    r.set(CUDNN_ATTR_RNG_DISTRIBUTION, CUDNN_TYPE_RNG_DISTRIBUTION, 1, &bernoulli)
        .set(CUDNN_ATTR_RNG_BERNOULLI_DIST_PROBABILITY, CUDNN_TYPE_DOUBLE, 1, &probability)
        .finalize("rng descriptor");
    Descriptor& op = graph_.parts.emplace_back(CUDNN_BACKEND_OPERATION_RNG_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_RNG_YDESC, y)
        .set_desc(CUDNN_ATTR_OPERATION_RNG_DESC, r)
        .set_desc(CUDNN_ATTR_OPERATION_RNG_SEED, seed)
        .set_desc(CUDNN_ATTR_OPERATION_RNG_OFFSET_DESC, offset);
    OpRecord record{OpRecord::Kind::rng, 0, -1, {uid(&seed), uid(&offset)}, uid(&y)};
    record.probability = probability;
    add(op.finalize("rng operation"), std::move(record));
  }

  // y = mode(x, b, t); b and t may be null. `axis` for GEN_INDEX only.
  void pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t precision, const Descriptor& x,
                 const Descriptor* b, const Descriptor* t, const Descriptor& y,
                 std::int64_t axis = -1) {
    Descriptor& pw = graph_.parts.emplace_back(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode)
        .set_type(CUDNN_ATTR_POINTWISE_MATH_PREC, precision);
    if (axis >= 0) pw.set_int64(CUDNN_ATTR_POINTWISE_AXIS, axis);
    pw.finalize("pointwise descriptor");
    Descriptor& op = graph_.parts.emplace_back(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    const float one = 1.0f;
    op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw)
        .set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
    if (t) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, *t);
    op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y)
        .set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one)
        .set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one);
    add(op.finalize("pointwise operation"),
        {OpRecord::Kind::pointwise, mode, axis, {uid(&x), uid(b), uid(t)}, uid(&y)});
  }

  // c = a b (batched over the first two axes); the overrides bound the rows (m), columns (n)
  // and inner dimension (k) per batch entry by the sequence lengths (null: the full extent).
  void matmul(const Descriptor& a, const Descriptor& b, const Descriptor& c, const Descriptor* m,
              const Descriptor* n, const Descriptor* k) {
    Descriptor& mm = graph_.parts.emplace_back(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    const double padding = 0.0;
    mm.set_type(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT)
        .set(CUDNN_ATTR_MATMUL_PADDING_VALUE, CUDNN_TYPE_DOUBLE, 1, &padding)
        .finalize("matmul descriptor");
    Descriptor& op = graph_.parts.emplace_back(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
        .set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, mm);
    if (m) op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC, *m);
    if (n) op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC, *n);
    if (k) op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC, *k);
    add(op.finalize("matmul operation"),
        {OpRecord::Kind::matmul, 0, -1, {uid(&a), uid(&b)}, uid(&c), uid(m), uid(n), uid(k)});
  }

  // y = reduce(x) over the axes where y has extent 1.
  void reduction(cudnnReduceTensorOp_t reduce, const Descriptor& x, const Descriptor& y) {
    Descriptor& r = graph_.parts.emplace_back(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    r.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &reduce)
        .set_type(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT)
        .set_bool(CUDNN_ATTR_REDUCTION_IS_DETERMINISTIC, false)
        .finalize("reduction descriptor");
    Descriptor& op = graph_.parts.emplace_back(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
        .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
        .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, r);
    add(op.finalize("reduction operation"),
        {OpRecord::Kind::reduction, reduce, -1, {uid(&x)}, uid(&y)});
  }

  // y = x seen through y's dimensions and strides (the transposes of P and dS).
  void reshape(const Descriptor& x, const Descriptor& y) {
    Descriptor& op = graph_.parts.emplace_back(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x)
        .set_desc(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y);
    add(op.finalize("reshape operation"), {OpRecord::Kind::reshape, 0, -1, {uid(&x)}, uid(&y)});
  }

  void finish(const char* what) {
    std::vector<cudnnBackendDescriptor_t> raw;
    for (const Descriptor* op : ops_) raw.push_back(op->raw());
    graph_.graph = Descriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    graph_.graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                     static_cast<std::int64_t>(raw.size()), raw.data());
    if (handle_) graph_.graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle_);
    graph_.graph.finalize(what);
  }

 private:
  // The tensor descriptor of a record; the variant pack binds every tensor that is not virtual.
  const Descriptor& described(const TensorRecord& r) {
    Descriptor& t = graph_.parts.emplace_back(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    t.set_int64(CUDNN_ATTR_TENSOR_UNIQUE_ID, r.uid)
        .set_type(CUDNN_ATTR_TENSOR_DATA_TYPE, r.type)
        .set_int64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, 16)
        .set_int64s(CUDNN_ATTR_TENSOR_DIMENSIONS, r.dims.data(), 4)
        .set_int64s(CUDNN_ATTR_TENSOR_STRIDES, r.strides.data(), 4);
    if (r.is_virtual)
      t.set_bool(CUDNN_ATTR_TENSOR_IS_VIRTUAL, true);
    else
      graph_.bound_uids.push_back(r.uid);
    if (r.by_value) t.set_bool(CUDNN_ATTR_TENSOR_IS_BY_VALUE, true);
    return remember(t.finalize("tensor descriptor"), r);
  }
  void add(const Descriptor& op, OpRecord record) {
    ops_.push_back(&op);
    graph_.ops.push_back(std::move(record));
  }
  const Descriptor& remember(const Descriptor& t, const TensorRecord& record) {
    uids_[&t] = record.uid;
    graph_.tensors.push_back(record);
    return t;
  }
  std::int64_t uid(const Descriptor* t) const { return t ? uids_.at(t) : 0; }

  Graph& graph_;
  cudnnHandle_t handle_;
  std::vector<const Descriptor*> ops_;
  std::map<const Descriptor*, std::int64_t> uids_;
  std::int64_t next_virtual_ = 1000;  // above every Uid
};

// The dropout mask's element type: bf16 0/1, as cudnn_frontend's custom-mask graphs have it (a
// u8 mask, the callers' own, makes cuDNN 9.19's kernel generator throw on some mask
// combinations; the runtime widens the u8 mask into scratch).
constexpr cudnnDataType_t kMaskType = CUDNN_DATA_BFLOAT16;

// The shapes every graph uses.
struct Layout {
  explicit Layout(const SdpaShape& s)
      : q{s.B, s.H, s.Tq, s.Dh},
        q_strides{s.Tq * s.H * s.Dh, s.Dh, s.H * s.Dh, 1},
        kv{s.B, s.H, s.Tk, s.Dh},
        kv_strides{s.Tk * s.H * s.Dh, s.Dh, s.H * s.Dh, 1},
        // K^T and V^T: the same memory with the last two axes swapped.
        kv_t{s.B, s.H, s.Dh, s.Tk},
        kv_t_strides{s.Tk * s.H * s.Dh, s.Dh, 1, s.H * s.Dh},
        scores{s.B, s.H, s.Tq, s.Tk},
        score_strides{s.H * s.Tq * s.Tk, s.Tq * s.Tk, s.Tk, 1},
        scores_t{s.B, s.H, s.Tk, s.Tq},
        score_t_strides{s.H * s.Tq * s.Tk, s.Tq * s.Tk, 1, s.Tk},
        rows{s.B, s.H, s.Tq, 1},
        row_strides{s.H * s.Tq, s.Tq, 1, 1},
        lengths{s.B, 1, 1, 1},
        length_strides{1, 1, 1, 1} {}
  Dims q, q_strides, kv, kv_strides, kv_t, kv_t_strides, scores, score_strides, scores_t,
      score_t_strides, rows, row_strides, lengths, length_strides;
};

// The sequence-length tensors, when the shape has a padding mask.
struct Lengths {
  const Descriptor* q = nullptr;
  const Descriptor* kv = nullptr;
};

Lengths lengths(Builder& g, const SdpaShape& s, const Layout& l) {
  if (!s.padding) return {};
  return {&g.tensor(kSeqLenQ, l.lengths, l.length_strides, CUDNN_DATA_INT32),
          &g.tensor(kSeqLenKv, l.lengths, l.length_strides, CUDNN_DATA_INT32)};
}

// The dropout keep mask over the scores: the caller's tensor, or drawn by cuDNN's RNG.
const Descriptor& dropout_mask(Builder& g, const SdpaShape& s, const Layout& l) {
  if (s.philox_keep <= 0) return g.tensor(kDropoutMask, l.scores, l.score_strides, kMaskType);
  const Descriptor& seed = g.scalar(kDropoutSeed, CUDNN_DATA_INT64);
  const Descriptor& offset = g.scalar(kDropoutOffset, CUDNN_DATA_INT64);
  const Descriptor& mask = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.rng(s.philox_keep, seed, offset, mask);
  return mask;
}

// The padding and causal masks on a score tensor: hidden scores become -inf. Returns the masked
// scores.
const Descriptor& masked(Builder& g, const SdpaShape& s, const Layout& l, const Lengths& len,
                         const Descriptor& scores) {
  const Descriptor* current = &scores;
  if (!s.padding && !s.causal) return *current;
  const Descriptor& neg_inf = g.scalar(kNegInf);
  const auto index = [&](std::int64_t axis, cudnnDataType_t precision) -> const Descriptor& {
    const Descriptor& out = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_INT32);
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, precision, *current, nullptr, nullptr, out, axis);
    return out;
  };
  const auto boolean = [&] {
    return &g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_BOOLEAN);
  };
  const auto select = [&](const Descriptor& keep) {
    const Descriptor& out = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
    g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, *current, &neg_inf, &keep, out);
    current = &out;
  };
  if (s.padding) {
    const Descriptor& row = index(2, CUDNN_DATA_INT32);
    const Descriptor& col = index(3, CUDNN_DATA_INT32);
    const Descriptor* row_ok = boolean();
    const Descriptor* col_ok = boolean();
    const Descriptor* both = boolean();
    g.pointwise(CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, row, len.q, nullptr, *row_ok);
    g.pointwise(CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, col, len.kv, nullptr, *col_ok);
    g.pointwise(CUDNN_POINTWISE_LOGICAL_AND, CUDNN_DATA_BOOLEAN, *row_ok, col_ok, nullptr, *both);
    select(*both);
  }
  if (s.causal) {
    const Descriptor& row = index(2, CUDNN_DATA_FLOAT);
    const Descriptor& col = index(3, CUDNN_DATA_FLOAT);
    const Descriptor* visible = boolean();  // key j <= query i
    g.pointwise(CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, &col, nullptr, *visible);
    select(*visible);
  }
  return *current;
}

// scale * (Q K^T), masked: the scores both graphs start from.
const Descriptor& scaled_masked_scores(Builder& g, const SdpaShape& s, const Layout& l,
                                       const Lengths& len, const Descriptor& q,
                                       const Descriptor& k_t, const Descriptor& scale) {
  const Descriptor& raw = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.matmul(q, k_t, raw, len.q, len.kv, nullptr);
  const Descriptor& scaled = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, raw, &scale, nullptr, scaled);
  return masked(g, s, l, len, scaled);
}

}  // namespace

Graph sdpa_forward_graph(const SdpaShape& s, cudnnHandle_t handle) {
  Graph graph;
  Builder g(graph, handle);
  const Layout l(s);
  const Descriptor& q = g.tensor(kQ, l.q, l.q_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& k_t = g.tensor(kK, l.kv_t, l.kv_t_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& v = g.tensor(kV, l.kv, l.kv_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& o = g.tensor(kO, l.q, l.q_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& stats = g.tensor(kStats, l.rows, l.row_strides, CUDNN_DATA_FLOAT);
  const Descriptor& scale = g.scalar(kScale);
  const Lengths len = lengths(g, s, l);
  const Descriptor& scores = scaled_masked_scores(g, s, l, len, q, k_t, scale);

  // Softmax with its statistics: stats = max + log(sum exp(scores - max)).
  const Descriptor& max = g.virtual_tensor(l.rows, l.row_strides, CUDNN_DATA_FLOAT);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, scores, max);
  const Descriptor& shifted = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, scores, &max, nullptr, shifted);
  const Descriptor& exps = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, shifted, nullptr, nullptr, exps);
  const Descriptor& sum = g.virtual_tensor(l.rows, l.row_strides, CUDNN_DATA_FLOAT);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, exps, sum);
  const Descriptor& log_sum = g.virtual_tensor(l.rows, l.row_strides, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_LOG, CUDNN_DATA_FLOAT, sum, nullptr, nullptr, log_sum);
  g.pointwise(CUDNN_POINTWISE_ADD, CUDNN_DATA_FLOAT, max, &log_sum, nullptr, stats);
  // P (dropped: P * mask * scale) in bf16: the second product's operands are the I/O type.
  const Descriptor& p = g.virtual_tensor(l.scores, l.score_strides,
                                         s.dropout ? CUDNN_DATA_FLOAT : CUDNN_DATA_BFLOAT16);
  g.pointwise(CUDNN_POINTWISE_DIV, CUDNN_DATA_FLOAT, exps, &sum, nullptr, p);
  const Descriptor* dropped = &p;
  if (s.dropout) {
    const Descriptor& mask = dropout_mask(g, s, l);
    const Descriptor& keep_scale = g.scalar(kDropoutScale);
    const Descriptor& masked_p = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
    g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, p, &mask, nullptr, masked_p);
    dropped = &g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_BFLOAT16);
    g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, masked_p, &keep_scale, nullptr, *dropped);
  }
  g.matmul(*dropped, v, o, len.q, nullptr, len.kv);
  g.finish("SDPA forward graph");
  return graph;
}

Graph sdpa_backward_graph(const SdpaShape& s, cudnnHandle_t handle) {
  Graph graph;
  Builder g(graph, handle);
  const Layout l(s);
  const Descriptor& q = g.tensor(kQ, l.q, l.q_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& k_t = g.tensor(kK, l.kv_t, l.kv_t_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& v_t = g.tensor(kV, l.kv_t, l.kv_t_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& o = g.tensor(kO, l.q, l.q_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& d_o = g.tensor(kDO, l.q, l.q_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& stats = g.tensor(kStats, l.rows, l.row_strides, CUDNN_DATA_FLOAT);
  const Descriptor& dq = g.tensor(kDQ, l.q, l.q_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& dk = g.tensor(kDK, l.kv, l.kv_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& dv = g.tensor(kDV, l.kv, l.kv_strides, CUDNN_DATA_BFLOAT16);
  const Descriptor& scale = g.scalar(kScale);
  const Descriptor& scale_inv = g.scalar(kDropoutScaleInv);
  const Lengths len = lengths(g, s, l);

  // softmax_sum = rowsum(dO * O): the rowsum(dP * P) of the softmax gradient.
  const Dims packed_q = {s.H * s.Tq * s.Dh, s.Tq * s.Dh, s.Dh, 1};
  const Descriptor& d_o_o = g.virtual_tensor(l.q, packed_q, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, d_o, &o, nullptr, d_o_o);
  const Descriptor& row_dot = g.virtual_tensor(l.rows, l.row_strides, CUDNN_DATA_FLOAT);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, d_o_o, row_dot);
  const Descriptor& softmax_sum = g.tensor(kSoftmaxSum, l.rows, l.row_strides, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, row_dot, &scale_inv, nullptr, softmax_sum);
  const Descriptor* mask = s.dropout ? &dropout_mask(g, s, l) : nullptr;
  const Descriptor* keep_scale = s.dropout ? &g.scalar(kDropoutScale) : nullptr;

  // P = exp(scale * Q K^T (masked) - stats), recomputed.
  const Descriptor& scores = scaled_masked_scores(g, s, l, len, q, k_t, scale);
  const Descriptor& shifted = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, scores, &stats, nullptr, shifted);
  const Descriptor& p = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, shifted, nullptr, nullptr, p);

  // dV = P^T dO (P dropped: P * mask * scale).
  const Descriptor* dropped = &p;
  if (s.dropout) {
    const Descriptor& masked_p = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
    g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, p, mask, nullptr, masked_p);
    dropped = &g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
    g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, masked_p, keep_scale, nullptr, *dropped);
  }
  const Descriptor& p_t = g.virtual_tensor(l.scores_t, l.score_t_strides, CUDNN_DATA_BFLOAT16);
  g.reshape(*dropped, p_t);
  g.matmul(p_t, d_o, dv, len.kv, nullptr, len.q);

  // dS = scale * P * (dO V^T - softmax_sum); with dropout
  // dS = scale * keep_scale * P * (mask * dO V^T - softmax_sum / keep_scale).
  const Descriptor& dp = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.matmul(d_o, v_t, dp, len.q, len.kv, nullptr);
  const Descriptor* dp_kept = &dp;
  if (s.dropout) {
    dp_kept = &g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
    g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, dp, mask, nullptr, *dp_kept);
  }
  const Descriptor& centred = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, *dp_kept, &softmax_sum, nullptr, centred);
  const Descriptor* weighted = &g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, centred, &p, nullptr, *weighted);
  if (s.dropout) {
    const Descriptor& rescaled = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
    g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, *weighted, keep_scale, nullptr, rescaled);
    weighted = &rescaled;
  }
  const Descriptor& ds = g.virtual_tensor(l.scores, l.score_strides, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, *weighted, &scale, nullptr, ds);

  // dK = dS^T Q.
  const Descriptor& ds_t = g.virtual_tensor(l.scores_t, l.score_t_strides, CUDNN_DATA_BFLOAT16);
  g.reshape(ds, ds_t);
  g.matmul(ds_t, q, dk, len.kv, nullptr, len.q);

  // dQ = dS K, written directly (no fp32 accumulator).
  const Descriptor& k = g.virtual_tensor(l.kv, l.kv_strides, CUDNN_DATA_FLOAT);
  g.reshape(k_t, k);
  g.matmul(ds, k, dq, len.q, nullptr, len.kv);
  g.finish("SDPA backward graph");
  return graph;
}

std::int64_t sdpa_backward_buffer_bytes(const SdpaShape& s) {
  return s.B * s.H * s.Tq * static_cast<std::int64_t>(sizeof(float));
}

Descriptor device_target_from_handle(cudnnHandle_t handle) {
  Descriptor target(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR);
  target.set(CUDNN_ATTR_DEVICEPROP_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  target.finalize("device properties (handle)");
  return target;
}

Descriptor device_target_from_id(int device) {
  Descriptor target(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR);
  const std::int32_t id = device;
  target.set(CUDNN_ATTR_DEVICEPROP_DEVICE_ID, CUDNN_TYPE_INT32, 1, &id);
  target.finalize("device properties (device id)");
  return target;
}

Descriptor device_target_from_json(const std::string& json) {
  Descriptor target(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR);
  target.set(CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
             static_cast<std::int64_t>(json.size()), json.data());
  target.finalize("device properties (JSON)");
  return target;
}

std::vector<Descriptor> engine_configs(const Graph& graph, const Descriptor& target) {
  Descriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  heuristics.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph.graph)
      .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  if (target) heuristics.set_desc(CUDNN_ATTR_ENGINEHEUR_DEVICEPROP, target);
  heuristics.finalize("engine heuristics");
  std::int64_t available = 0;
  check(api()->BackendGetAttribute(heuristics.raw(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &available, nullptr),
        "engine heuristics: count");
  std::vector<Descriptor> configs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (std::int64_t i = 0; i < available; ++i) {
    raw.push_back(configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR).raw());
  }
  std::int64_t returned = 0;
  check(api()->BackendGetAttribute(heuristics.raw(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, available, &returned, raw.data()),
        "engine heuristics: results");
  configs.resize(static_cast<std::size_t>(returned));
  return configs;
}

std::optional<Plan> first_plan(const Graph& graph, std::vector<Descriptor>& configs,
                               const Descriptor& target, std::string& why, bool compile_only,
                               cudnnHandle_t handle) {
  for (std::size_t i = 0; i < configs.size(); ++i) {
    Plan made{Descriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR), 0, graph.bound_uids};
    made.plan.set_desc(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, configs[i]);
    if (target) made.plan.set_desc(CUDNN_ATTR_EXECUTION_PLAN_DEVICEPROP, target);
    // The handle too where there is one: the classic way plans meet the device they run on.
    if (handle) made.plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    const cudnnStatus_t status = made.plan.try_finalize();
    if (status == CUDNN_STATUS_SUCCESS) {
      std::int64_t count = 0;
      check(api()->BackendGetAttribute(made.plan.raw(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                       CUDNN_TYPE_INT64, 1, &count, &made.workspace_bytes),
            "execution plan: workspace size");
      return made;
    }
    if (compile_only && status == CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER)
      return Plan{Descriptor(), 0, graph.bound_uids};
    why += (why.empty() ? "" : "; ") + std::string("configuration ") + std::to_string(i) + ": " +
           Error("plan", status).what();
  }
  return std::nullopt;
}

}  // namespace tr::cudnn
