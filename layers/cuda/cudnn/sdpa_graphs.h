// cuDNN's fused scaled-dot-product attention as backend operation graphs: the forward and
// backward patterns that cuDNN's flash-attention engines recognise (the ones cudnn_frontend's
// SDPA nodes lower to, built here on the backend API because cudnn_frontend is not installed),
// on this project's layout. Host code only: graphs and plans can be built for a described GPU
// without one (DeviceTarget::from_json), which is how CI checks that cuDNN accepts them.
//
// Layout: q [B, Tq, H*Dh], k and v [B, Tk, H*Dh], out like q, all bf16, heads read in place
// (cuDNN sees [B, H, T, Dh] with strides (T*H*Dh, Dh, H*Dh, 1)); lse f32 [B, H, Tq], the natural
// log of each row's softmax denominator over the scaled, masked scores (as the flash kernels).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "layers/cuda/cudnn/api.h"

namespace tr::cudnn {

struct SdpaShape {
  std::int64_t B = 0, H = 0, Tq = 0, Tk = 0, Dh = 0;
  bool padding = false;  // keys j >= kv_len[b] hidden (seq_len_kv; seq_len_q holds Tq)
  bool causal = false;   // keys j > i hidden (top-left aligned: query i at position i)
  // Dropout on the probabilities with the caller's keep mask (the CPU's masks, bit for bit):
  // P * mask * scale. The mask is bf16 [B, H, Tq, Tk], 1 = keep, 0 = dropped.
  bool dropout = false;
  // With dropout, > 0: the mask is drawn inside the graph by cuDNN's Philox RNG (an RNG
  // operation, Bernoulli with this keep probability, keyed by the seed and offset the call
  // binds), as cudnn_frontend's SDPA with a dropout probability does: no mask tensor, and the
  // backward draws the same mask again from the same seed and offset. 0: the caller's mask.
  double philox_keep = 0;
  bool operator<(const SdpaShape& o) const;
};
// "[B 32, H 16, Tq 256, Tk 256, Dh 64, padded, causal, dropout]": for messages and test names.
std::string to_string(const SdpaShape& s);

// The variant pack's keys: the tensors a caller binds.
enum Uid : std::int64_t {
  kQ = 1,
  kK,
  kV,
  kO,
  kStats,     // lse, f32 [B, H, Tq, 1]
  kScale,     // by value: 1 / sqrt(Dh)
  kSeqLenQ,   // i32 [B]: Tq each
  kSeqLenKv,  // i32 [B]: kv_len
  kNegInf,    // by value: the masks' fill
  kDO,        // backward: d out
  kDQ,
  kDK,
  kDV,
  kDropoutScaleInv,  // by value: scales softmax_sum (1 / kDropoutScale; the runtime binds 1
                     // and O / kDropoutScale: cuDNN's engine does not read this factor)
  kSoftmaxSum,       // backward: f32 [B, H, Tq, 1] = rowsum(dO * O), a real tensor of the graph
  kDropoutMask,      // bf16 [B, H, Tq, Tk]
  kDropoutScale,     // by value: 1 / keep probability
  kDropoutSeed,      // by value, int64: the Philox RNG's seed (philox_keep > 0)
  kDropoutOffset,    // by value, int64: its offset
};

// What a graph computes, recorded op by op as it is built: the tensors (dims and strides as
// cuDNN is told them) and the operations in the order made (each after its inputs). Nothing
// reads it at run time; tests/cudnn/test_cudnn_graph_semantics.cpp evaluates it in fp64 on the
// CPU against the flash kernels' CPU twin, which checks the graphs' mathematics (transposes as
// strides, masks, softmax statistics, dropout scaling, the backward's formulas) without cuDNN.
struct TensorRecord {
  std::int64_t uid = 0;
  std::array<std::int64_t, 4> dims{}, strides{};
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  bool is_virtual = false, by_value = false;
};
struct OpRecord {
  enum class Kind { matmul, pointwise, reduction, reshape, rng } kind;
  int mode = 0;                  // cudnnPointwiseMode_t or cudnnReduceTensorOp_t
  std::int64_t axis = -1;        // GEN_INDEX
  std::vector<std::int64_t> in;  // pointwise: x, b, t (0 where absent); matmul: a, b; x
  std::int64_t out = 0;
  std::int64_t m = 0, n = 0, k = 0;  // matmul overrides' uids (0: none)
  double probability = 0;            // rng: Bernoulli's probability of a 1 (in: seed, offset)
};

// An operation graph and every descriptor it references (kept alive with it).
struct Graph {
  std::deque<Descriptor> parts;
  Descriptor graph;
  std::vector<std::int64_t> bound_uids;  // the tensors a variant pack must bind, in order made
  std::vector<TensorRecord> tensors;
  std::vector<OpRecord> ops;
};

// The forward: O and Stats from Q, K, V (+ seq lens). `handle`: the cuDNN handle of the GPU the
// graph will run on (null for a described target). Not dynamic-shape graphs (whose plans could
// share compiled kernels across shapes): with that flag cuDNN 9.19 offers the backward no
// engine, so every shape is a graph and a plan of its own (cudnn_attention.cu bounds the cost).
Graph sdpa_forward_graph(const SdpaShape& shape, cudnnHandle_t handle = nullptr);
// The backward: dQ, dK, dV from Q, K, V, O, dO, Stats (+ seq lens); softmax_sum is an f32
// [B, H, Tq] buffer the caller provides (cuDNN's engines write it, then read it). dQ is written
// by one product of dS and K, not accumulated across key tiles in fp32 (cudnn_frontend's
// deterministic form): results are reproducible run to run, as with the project's own kernels.
Graph sdpa_backward_graph(const SdpaShape& shape, cudnnHandle_t handle = nullptr);
// Bytes of softmax_sum (the backward's own buffer, besides the plan's workspace).
std::int64_t sdpa_backward_buffer_bytes(const SdpaShape& shape);

// A GPU described by cuDNN's device property JSON: plans for a GPU this machine does not have
// (the engines' kernels are compiled but not loaded).
Descriptor device_target_from_json(const std::string& json);
// A device of this machine needs no target: an empty Descriptor makes the heuristics and plans
// follow the graph's and plan's handle (the classic way). Where a cuDNN wants one, these name
// the GPU by its handle or by its device id alone (on an H200, cuDNN 9 refused a descriptor
// given both: the handle sets the device, and a device id after it is a bad parameter).
Descriptor device_target_from_handle(cudnnHandle_t handle);
Descriptor device_target_from_id(int device);

// The engine configurations cuDNN's heuristics (mode A) offer for a graph on a target (empty:
// the graph's handle's GPU), best first; empty when no engine supports the graph there.
std::vector<Descriptor> engine_configs(const Graph& graph, const Descriptor& target);

struct Plan {
  Descriptor plan;
  std::int64_t workspace_bytes = 0;
  std::vector<std::int64_t> bound_uids;  // the graph's
};
// The first configuration that finalizes into a plan; nullopt when none does, with each
// configuration's failure appended to `why`. With `compile_only` (a described target), a
// configuration whose kernel compiled but could not be loaded for want of a driver counts as
// made (returns an empty Plan). `handle`: as for the graph.
std::optional<Plan> first_plan(const Graph& graph, std::vector<Descriptor>& configs,
                               const Descriptor& target, std::string& why,
                               bool compile_only = false, cudnnHandle_t handle = nullptr);

}  // namespace tr::cudnn
