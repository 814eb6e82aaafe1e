// GEMMs through cuBLASLt. cuBLASLt is column-major; a row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T, so every call passes B as cuBLASLt's first operand and A
// as its second, with the dimensions swapped: no transposes are materialised.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace tr::cuda {

namespace {

// The process's handle and a workspace for the split-K and stream-K algorithms, created on
// first use (so a CUDA build without a GPU never touches them).
struct Lt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  static constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;
};

Lt& lt() {
  static Lt* state = [] {
    auto* s = new Lt;  // leaked: destroying it after the driver unloads at exit would fault
    TR_CUBLAS_CHECK(cublasLtCreate(&s->handle));
    TR_CUDA_CHECK(cudaMalloc(&s->workspace, Lt::kWorkspaceBytes));
    return s;
  }();
  return *state;
}

// RAII owners of the descriptor objects of one call.
struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  MatmulDesc(cublasOperation_t ta, cublasOperation_t tb) {
    TR_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    TR_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    TR_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  }
  ~MatmulDesc() { cublasLtMatmulDescDestroy(desc); }
};

struct Layout {
  cublasLtMatrixLayout_t layout = nullptr;
  // `batch` matrices `stride` elements apart when batch > 1.
  Layout(cudaDataType type, i64 rows, i64 cols, i64 ld, i64 batch = 1, i64 stride = 0) {
    TR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, static_cast<std::uint64_t>(rows),
                                               static_cast<std::uint64_t>(cols), ld));
    if (batch > 1) {
      const std::int32_t count = static_cast<std::int32_t>(batch);
      const std::int64_t offset = stride;
      TR_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                       &count, sizeof count));
      TR_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
          layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &offset, sizeof offset));
    }
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(layout); }
};

// The alignment (bytes, a power of two up to 256) that every matrix of an operand keeps: its
// base pointer's and, when batched, its batch stride's.
std::uint32_t alignment(const void* ptr, i64 batch_stride_bytes) {
  std::uint64_t bits = reinterpret_cast<std::uintptr_t>(ptr) | 256u;
  bits |= static_cast<std::uint64_t>(batch_stride_bytes);
  return static_cast<std::uint32_t>(bits & (~bits + 1));  // the lowest set bit
}

struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  // Alignments of cuBLASLt's A, B and C/D operands: the heuristic sees the layouts but not the
  // pointers, and otherwise assumes 256-byte alignment (bf16 views and scratch sub-buffers are
  // aligned to 16 or less; PyTorch sets these for the same reason).
  Preference(std::uint32_t align_a, std::uint32_t align_b, std::uint32_t align_c) {
    TR_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    std::size_t bytes = Lt::kWorkspaceBytes;
    TR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes, sizeof bytes));
    const std::pair<cublasLtMatmulPreferenceAttributes_t, std::uint32_t> aligns[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c}};
    for (const auto& [attribute, value] : aligns)
      TR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof value));
  }
  ~Preference() { cublasLtMatmulPreferenceDestroy(pref); }
};

bool g_bf16_operands = false;                    // set_bf16_matmuls
bool g_bias_gradient_epilogue = true;            // set_bias_gradient_epilogue
bool g_gelu_epilogue = true;                     // set_gelu_epilogue
std::atomic<long> g_gelu_fallbacks{0};           // gelu_epilogue_fallbacks
std::atomic<long> g_bias_gradient_fallbacks{0};  // bias_gradient_epilogue_fallbacks

// cuBLASLt's heuristic choice for each distinct product, kept for the process. A training step
// repeats the same few dozen shapes every step, and a heuristic query costs host time on every
// call (PyTorch's cuBLAS path caches it the same way); that time shows wherever the host has
// waited for the device (the loss read, the gradient norm) and refills an empty queue.
// Everything the heuristic sees is in the key: types, transposes, sizes, leading dimensions,
// batching, the epilogue and the alignments of the operands, the bias and the GELU input. No
// algorithm (nullopt) is cached too.
using AlgoKey = std::array<i64, 20>;
using MaybeAlgo = std::optional<cublasLtMatmulAlgo_t>;

class AlgoCache {
 public:
  // The cached algorithm of `key`, or the heuristic's first choice (then cached).
  MaybeAlgo get(const AlgoKey& key, const std::function<MaybeAlgo()>& query) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = algos_.find(key);
      if (it != algos_.end()) return it->second;
    }
    const MaybeAlgo algo = query();
    std::lock_guard<std::mutex> lock(mutex_);
    algos_.emplace(key, algo);
    return algo;
  }

 private:
  std::mutex mutex_;
  std::map<AlgoKey, MaybeAlgo> algos_;
};

AlgoCache& algo_cache() {
  static AlgoCache* cache = new AlgoCache;  // leaked, as the handle
  return *cache;
}

// Elements a stored row-major operand spans: `rows` rows of `cols` at leading dimension ld,
// `batch` times `stride` apart.
i64 span(i64 rows, i64 cols, i64 ld, i64 batch, i64 stride) {
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

// bf16 elements rounded up to 16 bytes: each operand in a shared scratch block starts aligned,
// as cuBLASLt's fastest kernels want.
i64 aligned16(i64 n) {
  return (n + 7) / 8 * 8;
}

// Strides between the matrices of a batched product (elements), and their count.
struct Batching {
  i64 count = 1, a = 0, b = 0, c = 0;
};

// What cuBLASLt does to a product in its own pass before storing it: add bias[N] (elements of
// C's type: cuBLASLt's rule outside fp8 and integer kernels), then take max(., 0) when `relu`;
// or, with `bias_grad`, write there the sums over K of its B operand (our A) for each of C's
// columns (BGRADB; elements of C's type): a weight gradient's product giving the bias gradient.
// GELU, tanh form (cuBLASLt's GELU is the tanh approximation): with `gelu_input` and not
// `gelu_backward`, store gelu(product + bias) and the argument product + bias at gelu_input
// (GELU_AUX_BIAS: a feed-forward layer's first product, which keeps its pre-activation for
// backward); with `gelu_backward`, store product * gelu'(gelu_input) (DGELU: the input gradient
// of the layer after the GELU, carried through it). gelu_input: a dense matrix like C, of C's
// type.
struct Epilogue {
  const void* bias = nullptr;
  bool relu = false;
  void* bias_grad = nullptr;
  void* gelu_input = nullptr;
  bool gelu_backward = false;
  cublasLtEpilogue_t code() const {
    if (bias_grad) return CUBLASLT_EPILOGUE_BGRADB;
    if (gelu_input && gelu_backward) return CUBLASLT_EPILOGUE_DGELU;
    if (gelu_input) return bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    if (relu) return bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    return bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  }
  const void* vector() const { return bias_grad ? bias_grad : bias; }
};

void relu_in_place(cudaDataType type, void* C, i64 n) {
  if (type == CUDA_R_16BF)
    relu_forward(static_cast<bf16*>(C), static_cast<const bf16*>(C), n);
  else
    relu_forward(static_cast<float*>(C), static_cast<const float*>(C), n);
}

// The GELU epilogues' work as kernels over a dense C (their fallback): forward, C = gelu(input);
// backward, C *= gelu'(input).
void gelu_tanh_after(cudaDataType type, void* C, const void* input, i64 n, bool backward) {
  if (type == CUDA_R_16BF) {
    auto* c = static_cast<bf16*>(C);
    const auto* in = static_cast<const bf16*>(input);
    backward ? gelu_tanh_backward(c, c, in, n) : gelu_tanh_forward(c, in, n);
  } else {
    auto* c = static_cast<float*>(C);
    const auto* in = static_cast<const float*>(input);
    backward ? gelu_tanh_backward(c, c, in, n) : gelu_tanh_forward(c, in, n);
  }
}

// The epilogues cuBLASLt may decline (no algorithm for the descriptor) and that have a plain
// fallback: the product with the bias alone (forward GELU: into gelu_input), then the
// activation's kernel over C (a linear layer's output: one dense matrix).
bool has_kernel_fallback(const Epilogue& e) {
  return e.relu || e.gelu_input;
}

// Row-major C[M,N] = alpha op(A) op(B) + beta C, then the epilogue, elements of `type`;
// `batch.count` such products at once. `in_type` is the type of A and B, `type` that of C.
// False, nothing done, where cuBLASLt offers no algorithm with a bias-gradient epilogue (the
// caller sums the columns itself); every other product runs or throws.
bool lt_matmul(cudaDataType in_type, cudaDataType type, bool trans_a, bool trans_b, i64 M, i64 N,
               i64 K, float alpha, const void* A, i64 lda, const void* B, i64 ldb, float beta,
               void* C, i64 ldc, const Epilogue& epilogue, const Batching& batch = {}) {
  if (batch.count <= 0) return true;
  if (M == 0 || N == 0) return true;
  TR_CHECK(K > 0, "gemm with K = 0");
  Lt& state = lt();
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;   // B^T
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // A^T
  MatmulDesc desc(op_first, op_second);
  const cublasLtEpilogue_t code = epilogue.code();
  if (code != CUBLASLT_EPILOGUE_DEFAULT)
    TR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &code,
                                                   sizeof code));
  if (const void* vector = epilogue.vector()) {
    TR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &vector, sizeof vector));
    const cudaDataType bias_type = type;
    TR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                   &bias_type, sizeof bias_type));
  }
  // The GELU input is stored like C (C's type, the default aux type): leading dimension N,
  // which cuBLASLt requires to be a multiple of 8. Only for bf16 products: cuBLASLt does not say
  // how exactly its epilogue evaluates tanh, fp32 training is bound by its products (the passes
  // saved are a few per cent of a bf16 step, a fraction of that of an fp32 one), and fp32 keeps
  // the CPU's numerics within 1e-5 through the GELU kernels. Otherwise (or with the epilogues
  // switched off) straight to the fallback.
  bool gelu_epilogue = epilogue.gelu_input != nullptr;
  if (gelu_epilogue) {
    TR_CHECK(batch.count == 1 && ldc == N, "gemm: GELU epilogue on a strided output");
    gelu_epilogue = g_gelu_epilogue && in_type == CUDA_R_16BF && N % 8 == 0;
  }
  if (gelu_epilogue) {
    const void* aux = epilogue.gelu_input;
    const std::int64_t aux_ld = N;
    TR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        desc.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
    TR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                   &aux_ld, sizeof aux_ld));
  }
  // Column-major shapes of the stored operands: B is [K, N] row-major = N x K column-major.
  const Layout first(in_type, trans_b ? K : N, trans_b ? N : K, ldb, batch.count, batch.b);
  const Layout second(in_type, trans_a ? M : K, trans_a ? K : M, lda, batch.count, batch.a);
  const Layout out(type, N, M, ldc, batch.count, batch.c);
  // cuBLASLt's A is our B (the product runs transposed), its B our A.
  const i64 in_bytes = in_type == CUDA_R_16BF ? 2 : 4, out_bytes = type == CUDA_R_16BF ? 2 : 4;
  const bool batched = batch.count > 1;
  const std::uint32_t align_first = alignment(B, batched ? batch.b * in_bytes : 0),
                      align_second = alignment(A, batched ? batch.a * in_bytes : 0),
                      align_out = alignment(C, batched ? batch.c * out_bytes : 0);
  // The heuristic reads the bias pointer's value for its alignment (cublasLt.h, BIAS_POINTER).
  const std::uint32_t align_bias = epilogue.vector() ? alignment(epilogue.vector(), 0) : 0;
  const std::uint32_t align_aux = gelu_epilogue ? alignment(epilogue.gelu_input, 0) : 0;
  const AlgoKey key = {in_type,    type,     trans_a, trans_b,     code,         M,
                       N,          K,        lda,     ldb,         ldc,          batch.count,
                       batch.a,    batch.b,  batch.c, align_first, align_second, align_out,
                       align_bias, align_aux};
  const auto query = [&]() -> MaybeAlgo {
    Preference pref(align_first, align_second, align_out);
    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    // A heuristic with no algorithm for the descriptor answers NOT_SUPPORTED or found = 0; for
    // an epilogue that this type combination lacks it may answer INVALID_VALUE, which the
    // epilogues with a fallback take as no algorithm too.
    const cublasStatus_t status =
        cublasLtMatmulAlgoGetHeuristic(state.handle, desc.desc, first.layout, second.layout,
                                       out.layout, out.layout, pref.pref, 1, &heuristic, &found);
    const bool has_fallback = epilogue.bias_grad || has_kernel_fallback(epilogue);
    if (status == CUBLAS_STATUS_NOT_SUPPORTED ||
        (status == CUBLAS_STATUS_INVALID_VALUE && has_fallback))
      found = 0;
    else
      TR_CUBLAS_CHECK(status);
    if (found == 0) return std::nullopt;
    return heuristic.algo;
  };
  const MaybeAlgo algo =
      epilogue.gelu_input && !gelu_epilogue ? std::nullopt : algo_cache().get(key, query);
  if (!algo) {
    if (epilogue.bias_grad) return false;
    TR_CHECK(has_kernel_fallback(epilogue), "cuBLASLt has no algorithm for this GEMM");
    TR_CHECK(batch.count == 1 && ldc == N, "gemm: activation fallback on a strided output");
    if (epilogue.gelu_input && gelu_epilogue) ++g_gelu_fallbacks;  // asked, and declined
    // The product with the bias alone: into C, or, for a forward GELU, into its input.
    const bool into_gelu_input = epilogue.gelu_input && !epilogue.gelu_backward;
    lt_matmul(in_type, type, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta,
              into_gelu_input ? epilogue.gelu_input : C, ldc, Epilogue{epilogue.bias}, batch);
    if (epilogue.gelu_input)
      gelu_tanh_after(type, C, epilogue.gelu_input, M * N, epilogue.gelu_backward);
    else
      relu_in_place(type, C, M * N);
    return true;
  }
  TR_CUBLAS_CHECK(cublasLtMatmul(state.handle, desc.desc, &alpha, B, first.layout, A, second.layout,
                                 &beta, C, out.layout, C, out.layout, &*algo, state.workspace,
                                 Lt::kWorkspaceBytes, compute_stream()));
  return true;
}

// An fp32 product: as is, or under set_bf16_matmuls(true) with A and B rounded to bf16 first
// (copies in stream-ordered scratch; tensor cores, fp32 accumulation and an fp32 C).
void f32_matmul(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, float alpha, const float* A,
                i64 lda, const float* B, i64 ldb, float beta, float* C, i64 ldc,
                const Epilogue& epilogue, const Batching& batch = {}) {
  if (!g_bf16_operands || M == 0 || N == 0 || batch.count <= 0) {
    lt_matmul(CUDA_R_32F, CUDA_R_32F, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc, epilogue, batch);
    return;
  }
  const i64 na = span(trans_a ? K : M, trans_a ? M : K, lda, batch.count, batch.a);
  const i64 nb = span(trans_b ? N : K, trans_b ? K : N, ldb, batch.count, batch.b);
  StreamScratch rounded(static_cast<std::size_t>(aligned16(na) + nb) * sizeof(bf16));
  bf16* a16 = rounded.as<bf16>();
  bf16* b16 = a16 + aligned16(na);
  f32_to_bf16(a16, A, na);
  f32_to_bf16(b16, B, nb);
  lt_matmul(CUDA_R_16BF, CUDA_R_32F, trans_a, trans_b, M, N, K, alpha, a16, lda, b16, ldb, beta, C,
            ldc, epilogue, batch);
}

// An operand of a linear layer's products as cuBLASLt will read it: bf16 elements, used in place
// when stored so, else rounded from f32 into `scratch` (n elements at `at`).
const bf16* as_bf16(Operand m, i64 n, bf16* at) {
  if (m.bf16) return static_cast<const bf16*>(m.data);
  f32_to_bf16(at, static_cast<const float*>(m.data), n);
  return at;
}

void require_bf16_products(const char* what) {
  TR_CHECK(g_bf16_operands, std::string(what) + ": bf16 operands outside bf16 products");
}

// A linear layer's weight gradient, dweight[out, in] += dy^T x over N rows (dy and x of
// `in_type`), and with dbias, dbias[out] += the column sums of dy. The sums come from the
// product's own pass over dy (the BGRADB epilogue, written into scratch, then added: the
// epilogue overwrites and a gradient accumulates over micro-batches); where cuBLASLt has no
// algorithm with that epilogue, from `column_sums` (the column-sum kernel) after the product.
template <typename ColumnSums>
void weight_gradient(cudaDataType in_type, const void* dy, const void* x, float* dweight,
                     float* dbias, i64 N, i64 in, i64 out, const ColumnSums& column_sums) {
  if (dbias && g_bias_gradient_epilogue) {
    StreamScratch sums(static_cast<std::size_t>(out) * sizeof(float));
    Epilogue bias_grad;
    bias_grad.bias_grad = sums.as<float>();
    if (lt_matmul(in_type, CUDA_R_32F, true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dweight,
                  in, bias_grad)) {
      add_accumulate(dbias, sums.as<float>(), out);
      return;
    }
    ++g_bias_gradient_fallbacks;
  }
  lt_matmul(in_type, CUDA_R_32F, true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dweight, in,
            {});
  if (dbias) column_sums();
}

// An input gradient's epilogue: none, or carried through the tanh GELU at gelu_input (DGELU).
Epilogue gelu_backward_epilogue(Operand gelu_input) {
  Epilogue epilogue;
  epilogue.gelu_input = const_cast<void*>(gelu_input.data);  // read only: DGELU's input
  epilogue.gelu_backward = gelu_input.data != nullptr;
  return epilogue;
}

void check_gelu_input(Operand gelu_input, Output dx, float beta_dx) {
  if (!gelu_input.data) return;
  TR_CHECK(dx.data && gelu_input.bf16 == dx.bf16 && beta_dx == 0.0f,
           "linear backward through GELU: dx overwritten, the GELU input in dx's type");
}

// y[N, out] = x w^T, with `epilogue` (its bias pointer aside: `bias`, f32, in y's type when y is
// bf16).
void linear_forward_with(Output y, Operand x, const float* w, const float* bias, i64 N, i64 in,
                         i64 out, Epilogue epilogue) {
  epilogue.bias = bias;
  if (!x.bf16 && !y.bf16) {
    f32_matmul(false, true, N, out, in, 1.0f, static_cast<const float*>(x.data), in, w, in, 0.0f,
               static_cast<float*>(y.data), out, epilogue);
    return;
  }
  require_bf16_products("linear forward");
  if (N == 0 || out == 0) return;
  // Scratch: x (when f32), w, and the bias in y's type when y is bf16.
  const i64 nx = x.bf16 ? 0 : aligned16(N * in), nw = aligned16(out * in);
  const i64 nb = bias && y.bf16 ? aligned16(out) : 0;
  StreamScratch scratch(static_cast<std::size_t>(nx + nw + nb) * sizeof(bf16));
  bf16* base = scratch.as<bf16>();
  const bf16* x16 = as_bf16(x, N * in, base);
  const bf16* w16 = as_bf16(Operand{w, false}, out * in, base + nx);
  if (bias && y.bf16) {
    f32_to_bf16(base + nx + nw, bias, out);
    epilogue.bias = base + nx + nw;
  }
  lt_matmul(CUDA_R_16BF, y.bf16 ? CUDA_R_16BF : CUDA_R_32F, false, true, N, out, in, 1.0f, x16, in,
            w16, in, 0.0f, y.data, out, epilogue);
}

}  // namespace

void linear_forward_mixed(Output y, Operand x, const float* w, const float* bias, i64 N, i64 in,
                          i64 out, bool relu) {
  Epilogue epilogue;
  epilogue.relu = relu;
  linear_forward_with(y, x, w, bias, N, in, out, epilogue);
}

void linear_gelu_tanh_forward_mixed(Output y, Output pre_activation, Operand x, const float* w,
                                    const float* bias, i64 N, i64 in, i64 out) {
  TR_CHECK(pre_activation.data && pre_activation.bf16 == y.bf16,
           "linear GELU forward: the pre-activation is stored in the output's type");
  Epilogue epilogue;
  epilogue.gelu_input = pre_activation.data;
  linear_forward_with(y, x, w, bias, N, in, out, epilogue);
}

void linear_backward_mixed(Output dx, float beta_dx, float* dweight, float* dbias, Operand dy,
                           Operand x, const float* w, i64 N, i64 in, i64 out, Operand gelu_input) {
  if (!dx.bf16 && !dy.bf16 && !x.bf16 && !gelu_input.bf16) {
    linear_backward_products(static_cast<float*>(dx.data), beta_dx, dweight, dbias,
                             static_cast<const float*>(dy.data), static_cast<const float*>(x.data),
                             w, N, in, out, static_cast<const float*>(gelu_input.data));
    return;
  }
  check_gelu_input(gelu_input, dx, beta_dx);
  require_bf16_products("linear backward");
  if (N == 0) return;
  const i64 ndy = dy.bf16 ? 0 : aligned16(N * out), nx = x.bf16 ? 0 : aligned16(N * in);
  const i64 nw = dx.data ? aligned16(out * in) : 0;
  StreamScratch scratch(static_cast<std::size_t>(ndy + nx + nw) * sizeof(bf16));
  bf16* base = scratch.as<bf16>();
  const bf16* dy16 = as_bf16(dy, N * out, base);
  const bf16* x16 = as_bf16(x, N * in, base + ndy);
  if (dx.data) {
    const bf16* w16 = as_bf16(Operand{w, false}, out * in, base + ndy + nx);
    lt_matmul(CUDA_R_16BF, dx.bf16 ? CUDA_R_16BF : CUDA_R_32F, false, false, N, in, out, 1.0f, dy16,
              out, w16, in, beta_dx, dx.data, in, gelu_backward_epilogue(gelu_input));
  }
  weight_gradient(CUDA_R_16BF, dy16, x16, dweight, dbias, N, in, out, [&] {
    if (dy.bf16)
      bias_backward_accumulate(dbias, dy16, N, out);
    else
      bias_backward_accumulate(dbias, static_cast<const float*>(dy.data), N, out);
  });
}

void set_bias_gradient_epilogue(bool on) {
  g_bias_gradient_epilogue = on;
}
bool bias_gradient_epilogue() {
  return g_bias_gradient_epilogue;
}
long bias_gradient_epilogue_fallbacks() {
  return g_bias_gradient_fallbacks.load();
}

void set_gelu_epilogue(bool on) {
  g_gelu_epilogue = on;
}
long gelu_epilogue_fallbacks() {
  return g_gelu_fallbacks.load();
}
bool gelu_epilogue() {
  return g_gelu_epilogue;
}

void set_bf16_matmuls(bool on) {
  g_bf16_operands = on;
}
bool bf16_matmuls() {
  return g_bf16_operands;
}

void gemm(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, float alpha, const float* A, i64 lda,
          const float* B, i64 ldb, float beta, float* C, i64 ldc) {
  f32_matmul(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, {});
}

void gemm_strided_batched(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, float alpha,
                          const float* A, i64 lda, i64 stride_a, const float* B, i64 ldb,
                          i64 stride_b, float beta, float* C, i64 ldc, i64 stride_c, i64 batch) {
  f32_matmul(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, {},
             Batching{batch, stride_a, stride_b, stride_c});
}

void gemm_strided_batched_bf16_in(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, float alpha,
                                  const bf16* A, i64 lda, i64 stride_a, const bf16* B, i64 ldb,
                                  i64 stride_b, float beta, float* C, i64 ldc, i64 stride_c,
                                  i64 batch) {
  lt_matmul(CUDA_R_16BF, CUDA_R_32F, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
            {}, Batching{batch, stride_a, stride_b, stride_c});
}

void linear_backward_products(float* dx, float beta_dx, float* dweight, float* dbias,
                              const float* dy, const float* x, const float* w, i64 N, i64 in,
                              i64 out, const float* gelu_input) {
  if (N == 0) return;  // no rows: dx is empty, dweight and dbias gain nothing
  const Operand gelu{gelu_input, false};
  check_gelu_input(gelu, Output{dx, false}, beta_dx);
  const auto column_sums = [&] { bias_backward_accumulate(dbias, dy, N, out); };
  if (!g_bf16_operands) {
    if (dx)
      f32_matmul(false, false, N, in, out, 1.0f, dy, out, w, in, beta_dx, dx, in,
                 gelu_backward_epilogue(gelu));
    weight_gradient(CUDA_R_32F, dy, x, dweight, dbias, N, in, out, column_sums);
    return;
  }
  // bf16 products: dy rounded once for both (each gemm call would round it again).
  const i64 ndy = aligned16(N * out), nw = dx ? aligned16(out * in) : 0;
  StreamScratch rounded(static_cast<std::size_t>(ndy + nw + N * in) * sizeof(bf16));
  bf16* dy16 = rounded.as<bf16>();
  bf16* w16 = dy16 + ndy;
  bf16* x16 = w16 + nw;
  f32_to_bf16(dy16, dy, N * out);
  f32_to_bf16(x16, x, N * in);
  if (dx) {
    f32_to_bf16(w16, w, out * in);
    lt_matmul(CUDA_R_16BF, CUDA_R_32F, false, false, N, in, out, 1.0f, dy16, out, w16, in, beta_dx,
              dx, in, gelu_backward_epilogue(gelu));
  }
  weight_gradient(CUDA_R_16BF, dy16, x16, dweight, dbias, N, in, out, column_sums);
}

void gemm_bias(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, const float* A, i64 lda,
               const float* B, i64 ldb, const float* bias, float* C, i64 ldc) {
  f32_matmul(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc, Epilogue{bias});
}

void gemm_bf16(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, float alpha, const bf16* A, i64 lda,
               const bf16* B, i64 ldb, float beta, bf16* C, i64 ldc) {
  lt_matmul(CUDA_R_16BF, CUDA_R_16BF, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
            ldc, {});
}

}  // namespace tr::cuda
