// bf16 attention through cuDNN's fused flash-attention engines (the graphs of
// layers/cuda/cudnn/sdpa_graphs.h): one plan per shape and mask combination, made for the
// current GPU at the shape's second call (within a budget, below) and kept. Where cuDNN is
// missing, declines a shape, has no plan for it (yet), or the call needs what
// its graphs do not express (a causal offset), the callers run the project's own flash kernels
// instead. Dropout uses the caller's keep mask (the CPU's, bit for bit), widened to bf16, or,
// with train.attention_dropout: fused, a mask cuDNN's RNG draws inside the kernels.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"
#include "layers/cuda/runtime.h"
#include "layers/op_profile.h"
#ifdef TR_HAVE_CUDNN
#include "layers/cuda/cudnn/sdpa_graphs.h"
#include "layers/cuda/cudnn_attention_kernels.cuh"
#endif

namespace tr::cuda {

namespace {
std::atomic<bool> g_enabled{true};
}  // namespace

void set_cudnn_attention_enabled(bool on) {
  g_enabled = on;
}

#ifdef TR_HAVE_CUDNN

namespace {

// A shape's plan, or why there is none (yet).
struct PlanEntry {
  std::optional<cudnn::Plan> plan;
  cudnnHandle_t handle = nullptr;  // of the GPU the plan was made for
  std::string problem;
  int calls = 0;       // calls seen for this shape
  bool tried = false;  // a plan was looked for
};

// Making a plan compiles cuDNN's kernel for the shape (NVRTC, about a second on the host), and
// every (B, Tq, Tk) is a plan of its own. Fixed shapes (the ViT, the benchmarks) pay that once.
// Token-batched translation meets many shapes, most of them rarely: so a shape gets its plan at
// its second call (the first runs on the own kernels), and plans stop being made once their
// making has taken kPlanBudgetSeconds (TR_CUDNN_PLAN_SECONDS overrides): later new shapes stay
// on the own kernels. The calls of shapes with plans keep going to cuDNN.
constexpr int kCallsBeforePlan = 2;
constexpr double kPlanBudgetSeconds = 60;

struct PlanPolicy {
  int calls_before_plan = kCallsBeforePlan;
  double budget_seconds = [] {
    const char* env = std::getenv("TR_CUDNN_PLAN_SECONDS");
    return env && *env ? std::atof(env) : kPlanBudgetSeconds;
  }();
};
PlanPolicy g_policy;  // under g_mutex

// The ways of naming the GPU a plan is for, in the order tried: none (the graph's and plan's
// handle: the classic way, which cudnn_frontend and PyTorch take), a device-property
// descriptor from the handle, one from the device id. cuDNN's rules for these descriptors have
// changed between releases, and a GPU run is rare: the first way that gives a plan is kept.
enum class TargetWay { handle, properties_from_handle, properties_from_id, count };

const char* to_string(TargetWay way) {
  switch (way) {
    case TargetWay::handle: return "the handle";
    case TargetWay::properties_from_handle: return "device properties from the handle";
    default: return "device properties from the device id";
  }
}

// What one GPU keeps: its cuDNN handle (on the compute stream), the way of naming it that
// gave a plan (once one has), and the plans made.
struct DeviceState {
  cudnnHandle_t handle = nullptr;
  int device = 0;
  std::optional<TargetWay> way;
  std::map<cudnn::SdpaShape, PlanEntry> forward, backward;
};

std::mutex g_mutex;
std::map<int, DeviceState>& devices() {
  static auto* states = new std::map<int, DeviceState>;  // leaked: handles outlive exit order
  return *states;
}
std::string g_last_problem;
double g_plan_seconds = 0;            // spent making plans, under g_mutex
std::atomic<bool> g_unusable{false};  // cuDNN's handle could not be made: never tried again

DeviceState& device_state() {
  const int device = current_device();
  DeviceState& state = devices()[device];
  if (!state.handle) {
    const cudnn::Api* api = cudnn::api();
    cudnn::check(api->Create(&state.handle), "cudnnCreate");
    cudnn::check(api->SetStream(state.handle, compute_stream()), "cudnnSetStream");
    state.device = device;
  }
  return state;
}

std::string describe(bool backward, const cudnn::SdpaShape& s, const std::string& problem) {
  return std::string(backward ? "backward " : "forward ") + cudnn::to_string(s) + ": " + problem;
}

// A plan for `shape` on the state's GPU named the given way, or why there is none.
std::optional<cudnn::Plan> plan_named(TargetWay way, const DeviceState& state, bool backward,
                                      const cudnn::SdpaShape& shape, std::string& problem) {
  try {
    cudnn::Graph graph = backward ? cudnn::sdpa_backward_graph(shape, state.handle)
                                  : cudnn::sdpa_forward_graph(shape, state.handle);
    const cudnn::Descriptor target = way == TargetWay::handle ? cudnn::Descriptor()
                                     : way == TargetWay::properties_from_handle
                                         ? cudnn::device_target_from_handle(state.handle)
                                         : cudnn::device_target_from_id(state.device);
    std::vector<cudnn::Descriptor> configs = cudnn::engine_configs(graph, target);
    std::string why;
    std::optional<cudnn::Plan> plan =
        cudnn::first_plan(graph, configs, target, why, false, state.handle);
    if (!plan) problem = configs.empty() ? "no engine for the graph" : "no plan: " + why;
    return plan;
  } catch (const std::exception& e) {  // cuDNN's own C++ exceptions escape on some graphs
    problem = e.what();
    return std::nullopt;
  }
}

// Fills the entry's plan: named first the way that worked before on this GPU, then each other
// way in turn, until one gives a plan (then kept for the GPU's next shapes); the problems of all
// ways tried otherwise. A shape that the kept way cannot plan still gets the others' chance.
void make_plan(PlanEntry& entry, DeviceState& state, bool backward, const cudnn::SdpaShape& shape) {
  entry.handle = state.handle;
  std::vector<TargetWay> order;
  if (state.way) order.push_back(*state.way);
  for (int w = 0; w < static_cast<int>(TargetWay::count); ++w)
    if (!state.way || static_cast<TargetWay>(w) != *state.way)
      order.push_back(static_cast<TargetWay>(w));
  for (const TargetWay way : order) {
    std::string problem;
    entry.plan = plan_named(way, state, backward, shape, problem);
    if (entry.plan) {
      state.way = way;
      entry.problem.clear();
      return;
    }
    entry.problem += (entry.problem.empty() ? "" : "; ") + std::string("named by ") +
                     to_string(way) + ": " + problem;
  }
}

// Looks for the entry's plan once, within the plan budget (under g_mutex).
void plan_once(PlanEntry& entry, DeviceState& state, bool backward, const cudnn::SdpaShape& shape) {
  if (entry.tried) return;
  entry.tried = true;
  if (g_plan_seconds >= g_policy.budget_seconds) {
    char budget[64];
    std::snprintf(budget, sizeof budget, "%g s", g_policy.budget_seconds);
    entry.problem = std::string("the plan budget (") + budget + ", TR_CUDNN_PLAN_SECONDS) is spent";
    g_last_problem = describe(backward, shape, entry.problem);
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  make_plan(entry, state, backward, shape);
  g_plan_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!entry.problem.empty()) g_last_problem = describe(backward, shape, entry.problem);
}

// This GPU's state (under g_mutex), or nullptr where cuDNN cannot even be set up on it.
DeviceState* usable_device_state() {
  try {
    return &device_state();
  } catch (const std::exception& e) {
    g_unusable = true;
    g_last_problem = std::string("setting up cuDNN: ") + e.what();
    return nullptr;
  }
}

PlanEntry g_no_plan;  // the entry of every shape where cuDNN cannot be set up

// The plan entry of `shape` on the current GPU, counting this call; its plan made at the
// kCallsBeforePlan-th call within the budget (empty before, or when cuDNN has none). Entries stay
// where they are (std::map), so callers keep the reference.
PlanEntry& entry_for(bool backward, const cudnn::SdpaShape& shape) {
  std::lock_guard<std::mutex> lock(g_mutex);
  DeviceState* state = usable_device_state();
  if (!state) return g_no_plan;
  PlanEntry& entry = (backward ? state->backward : state->forward)[shape];
  ++entry.calls;
  if (entry.calls >= g_policy.calls_before_plan) plan_once(entry, *state, backward, shape);
  return entry;
}

// The backward's entry of `shape`, its plan looked for now if it was not yet: a forward whose
// dropout mask cuDNN draws runs only where the backward can draw it again.
PlanEntry& backward_entry_planned(const cudnn::SdpaShape& shape) {
  std::lock_guard<std::mutex> lock(g_mutex);
  DeviceState* state = usable_device_state();
  if (!state) return g_no_plan;
  PlanEntry& entry = state->backward[shape];
  plan_once(entry, *state, true, shape);
  return entry;
}

// A plan that fails to run is dropped: its shape goes to the own kernels from then on (a
// failure shows before cuDNN launches anything, so nothing was written).
void drop_failed_plan(PlanEntry& entry, bool backward, const cudnn::SdpaShape& shape,
                      const std::exception& e) {
  std::lock_guard<std::mutex> lock(g_mutex);
  entry.plan.reset();
  entry.problem = e.what();
  g_last_problem = describe(backward, shape, entry.problem);
}

// Whether a call can go to cuDNN at all (before any plan is looked for).
bool eligible(i64 Dh, bool causal, i64 q_offset, std::initializer_list<const void*> operands) {
  if (!g_enabled || g_unusable || !cudnn_attention_available()) return false;
  // A causal offset (queries continuing a sequence) is a bottom-right band these graphs do not
  // express.
  if (causal && q_offset != 0) return false;
  if (Dh % 8 != 0 || Dh > kFlashMaxHeadDim) return false;
  for (const void* p : operands)
    if (!aligned16(p)) return false;
  return true;
}

// Runs a plan on the compute stream, binding each tensor its graph has (plan.bound_uids) to
// the pointer `available` gives it; the scalars are host values.
void execute(cudnnHandle_t handle, const cudnn::Plan& plan,
             const std::map<std::int64_t, void*>& available, void* workspace) {
  std::vector<std::int64_t> uids;
  std::vector<void*> pointers;
  for (std::int64_t uid : plan.bound_uids) {
    const auto it = available.find(uid);
    TR_CHECK(it != available.end() && it->second,
             "cuDNN attention: no pointer for graph tensor " + std::to_string(uid));
    uids.push_back(uid);
    pointers.push_back(it->second);
  }
  cudnn::Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
           static_cast<std::int64_t>(uids.size()), uids.data())
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
           static_cast<std::int64_t>(pointers.size()), pointers.data())
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace)
      .finalize("variant pack");
  cudnn::check(cudnn::api()->BackendExecute(handle, plan.plan.raw(), pack.raw()),
               "cudnnBackendExecute (attention)");
}

// The host scalars both directions' graphs may bind, alive for the call. The Philox offset is
// always 0: each call has a seed of its own.
struct Scalars {
  float scale, keep_scale, one = 1.0f, neg_inf = -INFINITY;
  std::int64_t seed = 0, offset = 0;
  Scalars(i64 Dh, float keep, std::uint64_t philox_seed = 0)
      : scale(1.0f / std::sqrt(static_cast<float>(Dh))),
        keep_scale(keep),
        seed(static_cast<std::int64_t>(philox_seed)) {}
};

// The call's scratch: seq_len_q, the bf16 keep mask, the dropout backward's scaled output, the
// backward's row sums and cuDNN's workspace, laid out in one stream-ordered block at 256-byte
// offsets.
struct CallScratch {
  std::int32_t* seq_q = nullptr;
  bf16* mask = nullptr;
  bf16* kept_out = nullptr;
  float* softmax_sum = nullptr;
  void* workspace = nullptr;
};

// seq_len_q (Tq for every batch entry) in `at`.
void fill_query_lengths(std::int32_t* at, const cudnn::SdpaShape& s) {
  cudnn_side::
      fill_i32_kernel<<<cudnn_side::blocks_for(s.B), cudnn_side::kThreads, 0, compute_stream()>>>(
          at, static_cast<std::int32_t>(s.Tq), s.B);
  TR_CUDA_LAUNCH_CHECK();
}

// Offsets inside one scratch block: 256 bytes, the alignment cudaMallocAsync gives the block.
std::size_t round256(std::size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

void launch_clear_keyless_rows(bf16* rows, float* lse, const std::int32_t* kv_len,
                               const cudnn::SdpaShape& s) {
  const i64 n = s.B * s.Tq * s.H;
  cudnn_side::clear_keyless_rows_kernel<<<cudnn_side::blocks_for(n), cudnn_side::kThreads, 0,
                                          compute_stream()>>>(rows, lse, kv_len, s.B, s.H, s.Tq,
                                                              s.Dh);
  TR_CUDA_LAUNCH_CHECK();
}

struct ScratchSizes {
  std::size_t seq, mask, kept_out, sum, workspace;
  std::size_t total() const { return seq + mask + kept_out + sum + workspace; }
};

ScratchSizes scratch_sizes(const cudnn::SdpaShape& s, const cudnn::Plan& plan, bool backward) {
  return {s.padding ? round256(s.B * sizeof(std::int32_t)) : 0,
          s.dropout && s.philox_keep <= 0 ? round256(s.B * s.H * s.Tq * s.Tk * sizeof(bf16)) : 0,
          backward && s.dropout ? round256(s.B * s.Tq * s.H * s.Dh * sizeof(bf16)) : 0,
          backward ? round256(cudnn::sdpa_backward_buffer_bytes(s)) : 0,
          static_cast<std::size_t>(plan.workspace_bytes)};
}

// Lays the call's buffers out in `block` and fills seq_len_q and the bf16 mask.
CallScratch lay_out(const StreamScratch& block, const ScratchSizes& size, const cudnn::SdpaShape& s,
                    const std::uint8_t* keep_mask) {
  char* at = block.as<char>();
  CallScratch c;
  if (size.seq) {
    c.seq_q = reinterpret_cast<std::int32_t*>(at);
    fill_query_lengths(c.seq_q, s);
  }
  if (size.mask) {
    c.mask = reinterpret_cast<bf16*>(at + size.seq);
    const i64 n = s.B * s.H * s.Tq * s.Tk;
    const i64 threads = (n + cudnn_side::kMaskPerThread - 1) / cudnn_side::kMaskPerThread;
    cudnn_side::widen_keep_mask_kernel<<<cudnn_side::blocks_for(threads), cudnn_side::kThreads, 0,
                                         compute_stream()>>>(c.mask, keep_mask, n);
    TR_CUDA_LAUNCH_CHECK();
  }
  at += size.seq + size.mask;
  if (size.kept_out) c.kept_out = reinterpret_cast<bf16*>(at);
  at += size.kept_out;
  if (size.sum) c.softmax_sum = reinterpret_cast<float*>(at);
  c.workspace = at + size.sum;
  return c;
}

// The tensors both directions bind (each graph takes those it has: plan.bound_uids).
std::map<std::int64_t, void*> shared_bindings(const bf16* q, const bf16* k, const bf16* v,
                                              const float* lse, const std::int32_t* kv_len,
                                              const CallScratch& scratch, Scalars& scalars) {
  return {
      {cudnn::kQ, const_cast<bf16*>(q)},    {cudnn::kK, const_cast<bf16*>(k)},
      {cudnn::kV, const_cast<bf16*>(v)},    {cudnn::kStats, const_cast<float*>(lse)},
      {cudnn::kScale, &scalars.scale},      {cudnn::kNegInf, &scalars.neg_inf},
      {cudnn::kSeqLenQ, scratch.seq_q},     {cudnn::kSeqLenKv, const_cast<std::int32_t*>(kv_len)},
      {cudnn::kDropoutMask, scratch.mask},  {cudnn::kDropoutScale, &scalars.keep_scale},
      {cudnn::kDropoutSeed, &scalars.seed}, {cudnn::kDropoutOffset, &scalars.offset}};
}

// Runs the entry's plan; false, the plan dropped, where cuDNN fails to run it.
bool run(PlanEntry& entry, bool backward, const cudnn::SdpaShape& shape,
         const std::map<std::int64_t, void*>& available, void* workspace) {
  try {
    execute(entry.handle, *entry.plan, available, workspace);
  } catch (const std::exception& e) {
    drop_failed_plan(entry, backward, shape, e);
    return false;
  }
  return true;
}

}  // namespace

bool cudnn_attention_available() {
  static const bool available = [] {
    return cudnn::api() != nullptr && device_count() > 0 && compute_capability() >= 80;
  }();
  return available;
}

std::string cudnn_attention_status() {
  if (!cudnn::api()) return "unavailable: " + cudnn::unavailable_reason();
  const std::size_t v = cudnn::version();
  std::string text = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
                     std::to_string(v % 100);
  if (device_count() > 0 && compute_capability() < 80) text += " (not used: GPU before sm_80)";
  std::lock_guard<std::mutex> lock(g_mutex);  // which way of naming the GPU gave plans
  const auto it = device_count() > 0 ? devices().find(current_device()) : devices().end();
  if (it != devices().end() && it->second.way)
    text += std::string(" (plans named by ") + to_string(*it->second.way) + ")";
  return text;
}

void set_cudnn_plan_policy(int calls_before_plan, double budget_seconds) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_policy.calls_before_plan = calls_before_plan;
  g_policy.budget_seconds = budget_seconds;
}

std::string cudnn_attention_last_problem() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_last_problem;
}

namespace {

// One forward call on the entry's plan (the shape's dropout: none, the caller's keep mask, or
// drawn from `scalars.seed`); false, the plan dropped, where cuDNN fails to run it.
bool run_forward(PlanEntry& entry, const cudnn::SdpaShape& shape, bf16* out, float* lse,
                 const bf16* q, const bf16* k, const bf16* v, const std::int32_t* kv_len,
                 const std::uint8_t* keep_mask, Scalars& scalars) {
  if (shape.B == 0 || shape.Tq == 0) return true;
  // The profile's record of who ran it (and whether cuDNN drew the dropout mask).
  OpTimer part(shape.philox_keep > 0 ? "flash_attention_forward: cuDNN, drawn dropout"
                                     : "flash_attention_forward: cuDNN");
  const ScratchSizes sizes = scratch_sizes(shape, *entry.plan, false);
  StreamScratch block(sizes.total());
  const CallScratch scratch = lay_out(block, sizes, shape, keep_mask);
  std::map<std::int64_t, void*> available = shared_bindings(q, k, v, lse, kv_len, scratch, scalars);
  available[cudnn::kO] = out;
  if (!run(entry, false, shape, available, scratch.workspace)) return false;
  if (shape.padding) launch_clear_keyless_rows(out, lse, kv_len, shape);
  return true;
}

// One backward call on the entry's plan, as run_forward.
bool run_backward(PlanEntry& entry, const cudnn::SdpaShape& shape, bf16* dq, bf16* dk, bf16* dv,
                  const bf16* dout, const bf16* out, const float* lse, const bf16* q, const bf16* k,
                  const bf16* v, const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                  Scalars& scalars) {
  const i64 B = shape.B, H = shape.H, Tq = shape.Tq, Tk = shape.Tk, Dh = shape.Dh;
  if (B == 0 || Tk == 0) return true;
  if (Tq == 0) {  // no query reaches a key: zero gradients, as the own kernels give
    memset_zero(dk, static_cast<std::size_t>(B * Tk * H * Dh) * sizeof(bf16));
    memset_zero(dv, static_cast<std::size_t>(B * Tk * H * Dh) * sizeof(bf16));
    return true;
  }
  OpTimer part(shape.philox_keep > 0 ? "flash_attention_backward: cuDNN, drawn dropout"
                                     : "flash_attention_backward: cuDNN");
  const ScratchSizes sizes = scratch_sizes(shape, *entry.plan, true);
  StreamScratch block(sizes.total());
  const CallScratch scratch = lay_out(block, sizes, shape, keep_mask);
  if (shape.padding) {
    // The dV and dK products stop at each sequence's kv_len (their M override); the rows of
    // padded keys must still read 0, as the own kernels write them (they reach the K and V
    // projections' weight gradients).
    memset_zero(dk, static_cast<std::size_t>(B * Tk * H * Dh) * sizeof(bf16));
    memset_zero(dv, static_cast<std::size_t>(B * Tk * H * Dh) * sizeof(bf16));
  }
  // With dropout the gradient's row sums must be rowsum(dO * O) / keep_scale (see
  // sdpa_backward_graph), but cuDNN 9.14's engine on an H200 reads rowsum(dO * O) whatever the
  // graph multiplies it by: measured, the dQ and dK it gave equal exactly those of the sums
  // without the factor. It is given O / keep_scale instead, and a factor of 1, so that either
  // reading gives the right sums (the bf16 rounding of the scaled O is far inside the bounds).
  const bf16* rows_out = out;
  if (shape.dropout) {
    const i64 n = B * Tq * H * Dh;
    cudnn_side::
        scale_bf16_kernel<<<cudnn_side::blocks_for(n), cudnn_side::kThreads, 0, compute_stream()>>>(
            scratch.kept_out, out, 1.0f / scalars.keep_scale, n);
    TR_CUDA_LAUNCH_CHECK();
    rows_out = scratch.kept_out;
  }
  std::map<std::int64_t, void*> available = shared_bindings(q, k, v, lse, kv_len, scratch, scalars);
  available.insert({{cudnn::kO, const_cast<bf16*>(rows_out)},
                    {cudnn::kDO, const_cast<bf16*>(dout)},
                    {cudnn::kDQ, dq},
                    {cudnn::kDK, dk},
                    {cudnn::kDV, dv},
                    {cudnn::kSoftmaxSum, scratch.softmax_sum},
                    {cudnn::kDropoutScaleInv, &scalars.one}});
  if (!run(entry, true, shape, available, scratch.workspace)) return false;
  if (shape.padding) launch_clear_keyless_rows(dq, nullptr, kv_len, shape);
  return true;
}

}  // namespace

bool cudnn_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                             float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                             i64 q_offset) {
  if (!eligible(Dh, causal, q_offset, {out, q, k, v})) return false;
  const cudnn::SdpaShape shape{B, H, Tq, Tk, Dh, kv_len != nullptr, causal, keep_mask != nullptr};
  PlanEntry& entry = entry_for(false, shape);
  if (!entry.plan) return false;
  Scalars scalars(Dh, keep_scale);
  return run_forward(entry, shape, out, lse, q, k, v, kv_len, keep_mask, scalars);
}

bool cudnn_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out,
                              const float* lse, const bf16* q, const bf16* k, const bf16* v,
                              const std::int32_t* kv_len, const std::uint8_t* keep_mask,
                              float keep_scale, i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool causal,
                              i64 q_offset) {
  if (!eligible(Dh, causal, q_offset, {dq, dk, dv, dout, out, q, k, v})) return false;
  const cudnn::SdpaShape shape{B, H, Tq, Tk, Dh, kv_len != nullptr, causal, keep_mask != nullptr};
  PlanEntry& entry = entry_for(true, shape);
  if (!entry.plan) return false;
  Scalars scalars(Dh, keep_scale);
  return run_backward(entry, shape, dq, dk, dv, dout, out, lse, q, k, v, kv_len, keep_mask,
                      scalars);
}

namespace {
cudnn::SdpaShape drawn_dropout_shape(i64 B, i64 H, i64 Tq, i64 Tk, i64 Dh, bool padded, bool causal,
                                     float keep_probability) {
  cudnn::SdpaShape shape{B, H, Tq, Tk, Dh, padded, causal, true};
  shape.philox_keep = keep_probability;
  return shape;
}
}  // namespace

bool cudnn_attention_forward_drawn_dropout(bf16* out, float* lse, const bf16* q, const bf16* k,
                                           const bf16* v, const std::int32_t* kv_len,
                                           float keep_probability, std::uint64_t seed, i64 B, i64 H,
                                           i64 Tq, i64 Tk, i64 Dh, bool causal) {
  TR_CHECK(keep_probability > 0 && keep_probability < 1,
           "cuDNN drawn dropout: keep probability outside (0, 1)");
  if (!eligible(Dh, causal, 0, {out, q, k, v})) return false;
  const cudnn::SdpaShape shape =
      drawn_dropout_shape(B, H, Tq, Tk, Dh, kv_len != nullptr, causal, keep_probability);
  PlanEntry& entry = entry_for(false, shape);
  if (!entry.plan || !backward_entry_planned(shape).plan) return false;
  Scalars scalars(Dh, 1.0f / keep_probability, seed);
  return run_forward(entry, shape, out, lse, q, k, v, kv_len, nullptr, scalars);
}

void cudnn_attention_backward_drawn_dropout(bf16* dq, bf16* dk, bf16* dv, const bf16* dout,
                                            const bf16* out, const float* lse, const bf16* q,
                                            const bf16* k, const bf16* v,
                                            const std::int32_t* kv_len, float keep_probability,
                                            std::uint64_t seed, i64 B, i64 H, i64 Tq, i64 Tk,
                                            i64 Dh, bool causal) {
  const cudnn::SdpaShape shape =
      drawn_dropout_shape(B, H, Tq, Tk, Dh, kv_len != nullptr, causal, keep_probability);
  PlanEntry& entry = backward_entry_planned(shape);
  const auto fail = [&](const std::string& why) {
    throw InternalError("cuDNN attention backward " + cudnn::to_string(shape) +
                        " with the dropout mask its forward drew: " + why +
                        " (no other kernel can draw that mask again)");
  };
  if (!eligible(Dh, causal, 0, {dq, dk, dv, dout, out, q, k, v}))
    fail("the call is not one cuDNN takes");
  if (!entry.plan) fail("no plan: " + entry.problem);
  Scalars scalars(Dh, 1.0f / keep_probability, seed);
  if (!run_backward(entry, shape, dq, dk, dv, dout, out, lse, q, k, v, kv_len, nullptr, scalars))
    fail(entry.problem);
}

#else  // built without cuDNN's headers: the own kernels only

bool cudnn_attention_available() {
  return false;
}
std::string cudnn_attention_status() {
  return "not built (no cuDNN 9.11+ headers at build time)";
}
void set_cudnn_plan_policy(int, double) {}
std::string cudnn_attention_last_problem() {
  return "";
}
bool cudnn_attention_forward(bf16*, float*, const bf16*, const bf16*, const bf16*,
                             const std::int32_t*, const std::uint8_t*, float, i64, i64, i64, i64,
                             i64, bool, i64) {
  return false;
}
bool cudnn_attention_backward(bf16*, bf16*, bf16*, const bf16*, const bf16*, const float*,
                              const bf16*, const bf16*, const bf16*, const std::int32_t*,
                              const std::uint8_t*, float, i64, i64, i64, i64, i64, bool, i64) {
  return false;
}
bool cudnn_attention_forward_drawn_dropout(bf16*, float*, const bf16*, const bf16*, const bf16*,
                                           const std::int32_t*, float, std::uint64_t, i64, i64, i64,
                                           i64, i64, bool) {
  return false;
}
void cudnn_attention_backward_drawn_dropout(bf16*, bf16*, bf16*, const bf16*, const bf16*,
                                            const float*, const bf16*, const bf16*, const bf16*,
                                            const std::int32_t*, float, std::uint64_t, i64, i64,
                                            i64, i64, i64, bool) {
  throw InternalError("cuDNN attention backward with drawn dropout: this build has no cuDNN");
}

#endif

}  // namespace tr::cuda
