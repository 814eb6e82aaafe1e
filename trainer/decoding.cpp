#include "trainer/decoding.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "layers/device.h"
#include "models/decoder_cache.h"
#include "trainer/beam_search.h"

namespace tr {

namespace {

// out[r, :] = log_softmax(logits[r, :]) in double, then the never-produced ids get -inf.
template <typename T>
void log_softmax_rows(std::vector<double>& out, const T* logits, std::int64_t rows, std::int64_t V,
                      const DecodeOptions& o) {
  out.resize(static_cast<std::size_t>(rows * V));
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* x = logits + r * V;
    double* y = out.data() + r * V;
    double mx = -std::numeric_limits<double>::infinity();
    for (std::int64_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(x[v]));
    double sum = 0;
    for (std::int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(x[v]) - mx);
    const double lse = mx + std::log(sum);
    for (std::int64_t v = 0; v < V; ++v) y[v] = static_cast<double>(x[v]) - lse;
    for (std::int32_t banned : {o.bos_id, o.pad_id})
      if (banned != o.eos_id && banned >= 0 && banned < V)
        y[banned] = -std::numeric_limits<double>::infinity();
  }
}

}  // namespace

void validate_decode_options(const DecodeOptions& o) {
  if (o.beam < 1)
    throw UserError("beam: expected a positive integer, got " + std::to_string(o.beam));
  if (o.max_len < 0)
    throw UserError("max_len: expected 0 (automatic) or a positive integer, got " +
                    std::to_string(o.max_len));
  if (!(o.length_penalty >= 0))
    throw UserError("length_penalty: expected a value >= 0, got " +
                    std::to_string(o.length_penalty));
}

std::vector<std::int64_t> output_limits(const Tensor& src_len, const DecodeOptions& o,
                                        std::int64_t model_max_len) {
  std::vector<std::int64_t> limits;
  for (std::int64_t b = 0; b < src_len.numel(); ++b) {
    const std::int64_t automatic = 2 * std::int64_t{src_len.data<std::int32_t>()[b]} + 10;
    limits.push_back(std::min(o.max_len > 0 ? o.max_len : automatic, model_max_len - 1));
  }
  return limits;
}

std::vector<std::vector<std::int32_t>> translate_batch(EncoderDecoder& model, const Batch& batch,
                                                       const DecodeOptions& o) {
  validate_decode_options(o);
  if (batch.src.dim(0) == 0) return {};
  const ModelConfig& c = model.config();
  for (auto [key, id] : {std::pair{"bos_id", o.bos_id}, {"eos_id", o.eos_id}})
    if (id < 0 || id >= c.vocab_size)
      throw UserError(std::string(key) + ": " + std::to_string(id) +
                      " is outside the model's vocabulary of " + std::to_string(c.vocab_size));
  const std::vector<std::int64_t> limits = output_limits(batch.src_len, o, c.max_len);
  // On the model's device: a GPU-trained model decodes there (each step's logits come back for
  // the search, [rows, V]).
  const Device device = model.device();
  const Tensor src = to_device(batch.src, device), src_len = to_device(batch.src_len, device);
  const Tensor memory = model.encode(src, src_len, ForwardContext{});
  // Beam search also scores the forced eos at position `limit`.
  DecoderCache cache(model, memory, batch.src_len,
                     *std::max_element(limits.begin(), limits.end()) + 1);

  const StepScorer scorer = [&](const std::vector<std::int64_t>& parent,
                                const std::vector<std::int32_t>& token,
                                std::vector<double>& log_probs) {
    cache.reorder(parent);
    const Tensor logits = to_device(cache.step(token), Device::cpu);
    if (logits.dtype() == DType::f64)
      log_softmax_rows(log_probs, logits.data<double>(), logits.dim(0), logits.dim(1), o);
    else
      log_softmax_rows(log_probs, logits.data<float>(), logits.dim(0), logits.dim(1), o);
  };
  const SearchOptions search{o.beam, o.length_penalty, c.vocab_size, o.bos_id, o.eos_id};
  return o.beam == 1 ? greedy_search(limits, search, scorer) : beam_search(limits, search, scorer);
}

}  // namespace tr
