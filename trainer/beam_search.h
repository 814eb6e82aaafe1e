// Greedy and beam search over a scoring callback, independent of any model: the model side
// (trainer/decoding.h) plugs in a DecoderCache; tests plug in hand-made distributions.
//
// Rows are the live hypotheses of all unfinished sentences, grouped by sentence. Each step
// calls the scorer once for all rows; rows of finished sentences are dropped, so the scorer
// (and its cache) shrinks as sentences finish.
//
// Beam search (the fairseq rule): per sentence, take the 2K best extensions of its K live
// hypotheses by summed log-probability; an extension ending in eos among the first K becomes
// a finished hypothesis, the first K others stay live. A sentence is done when it has K
// finished hypotheses; at its length limit only eos is allowed, which finishes every live
// hypothesis. The result is the finished hypothesis with the best normalised score
//   sum of log-probabilities / (generated tokens incl. eos)^alpha
// (alpha = length_penalty: 0 is the raw sum, 1 the average log-probability per token).
// K = 1 is exactly greedy search.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace tr {

// One step of the scorer: row r extends row parent[r] of the previous call by token[r].
// Before the first call row b is sentence b, so the first call's parents are sentence
// indices (all of them unless a sentence may produce no token) and its tokens are bos.
// Fills log_probs with [rows, vocab] log-probabilities of the next token (resizing it).
using StepScorer =
    std::function<void(const std::vector<std::int64_t>& parent,
                       const std::vector<std::int32_t>& token, std::vector<double>& log_probs)>;

struct SearchOptions {
  int beam = 1;
  double length_penalty = 1.0;  // alpha, see above
  std::int64_t vocab = 0;
  std::int32_t bos_id = 1, eos_id = 2;
};

// max_tokens[s]: the most tokens sentence s may produce before eos (eos is then forced).
// Returns each sentence's tokens without bos and eos.
std::vector<std::vector<std::int32_t>> greedy_search(const std::vector<std::int64_t>& max_tokens,
                                                     const SearchOptions& options,
                                                     const StepScorer& scorer);
std::vector<std::vector<std::int32_t>> beam_search(const std::vector<std::int64_t>& max_tokens,
                                                   const SearchOptions& options,
                                                   const StepScorer& scorer);

}  // namespace tr
