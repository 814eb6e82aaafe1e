#include "trainer/beam_search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "layers/error.h"

namespace tr {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

void check_options(const SearchOptions& o) {
  if (o.beam < 1)
    throw UserError("beam: expected a positive integer, got " + std::to_string(o.beam));
  if (!(o.length_penalty >= 0))
    throw UserError("length_penalty: expected a value >= 0, got " +
                    std::to_string(o.length_penalty));
  TR_CHECK(o.vocab > 0 && o.eos_id >= 0 && o.eos_id < o.vocab, "search: vocabulary and eos id");
}

void check_scores(const std::vector<double>& log_probs, std::size_t rows, std::int64_t vocab) {
  TR_CHECK(log_probs.size() == rows * static_cast<std::size_t>(vocab),
           "scorer returned " + std::to_string(log_probs.size()) + " values for " +
               std::to_string(rows) + " rows of " + std::to_string(vocab));
}

// NaN (a diverged model) ranks below every number, so sorting stays well defined.
double ranked(double x) {
  return std::isnan(x) ? kNegInf : x;
}

struct Hypothesis {
  std::int64_t sentence;
  double score;  // summed log-probabilities
  std::vector<std::int32_t> tokens;
};

struct Candidate {
  double score;
  std::int64_t row;
  std::int32_t token;
};

// Best first; ties go to the lower row, then the lower token, so results are deterministic.
bool better(const Candidate& a, const Candidate& b) {
  if (a.score != b.score) return a.score > b.score;
  if (a.row != b.row) return a.row < b.row;
  return a.token < b.token;
}

// Appends the `count` best extensions of row `row` (all of them when count >= vocab).
void best_extensions(std::vector<Candidate>& out, std::vector<std::int32_t>& order,
                     const double* log_probs, std::int64_t vocab, double base, std::int64_t row,
                     std::int64_t count) {
  order.resize(static_cast<std::size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  const auto n = static_cast<std::ptrdiff_t>(std::min(count, vocab));
  std::partial_sort(order.begin(), order.begin() + n, order.end(),
                    [&](std::int32_t a, std::int32_t b) {
                      const double pa = ranked(log_probs[a]), pb = ranked(log_probs[b]);
                      return pa != pb ? pa > pb : a < b;
                    });
  for (std::ptrdiff_t i = 0; i < n; ++i)
    out.push_back({base + ranked(log_probs[order[i]]), row, order[i]});
}

struct Finished {
  std::int64_t count = 0;
  bool any = false;
  double best = kNegInf;  // normalised score of the best one
  std::vector<std::int32_t> tokens;
};

}  // namespace

std::vector<std::vector<std::int32_t>> greedy_search(const std::vector<std::int64_t>& max_tokens,
                                                     const SearchOptions& o,
                                                     const StepScorer& scorer) {
  check_options(o);
  const auto B = static_cast<std::int64_t>(max_tokens.size());
  std::vector<std::vector<std::int32_t>> result(max_tokens.size());
  std::vector<std::int64_t> parent(max_tokens.size()), sentence(max_tokens.size());
  std::iota(parent.begin(), parent.end(), 0);
  std::iota(sentence.begin(), sentence.end(), 0);
  std::vector<std::int32_t> token(static_cast<std::size_t>(B), o.bos_id);
  std::vector<double> log_probs;
  for (std::int64_t step = 0; !sentence.empty(); ++step) {
    // A row at its limit would be forced to eos: it ends here without another scorer call.
    std::vector<std::int64_t> keep;
    for (std::size_t r = 0; r < sentence.size(); ++r)
      if (step < max_tokens[static_cast<std::size_t>(sentence[r])])
        keep.push_back(static_cast<std::int64_t>(r));
    if (keep.empty()) break;
    if (keep.size() != sentence.size()) {
      std::vector<std::int64_t> p, s;
      std::vector<std::int32_t> t;
      for (std::int64_t r : keep) {
        p.push_back(parent[r]);
        s.push_back(sentence[r]);
        t.push_back(token[r]);
      }
      parent.swap(p);
      sentence.swap(s);
      token.swap(t);
    }
    scorer(parent, token, log_probs);
    check_scores(log_probs, sentence.size(), o.vocab);

    std::vector<std::int64_t> next_parent, next_sentence;
    std::vector<std::int32_t> next_token;
    for (std::size_t r = 0; r < sentence.size(); ++r) {
      const double* row = log_probs.data() + r * static_cast<std::size_t>(o.vocab);
      std::int32_t best = 0;
      for (std::int32_t v = 1; v < o.vocab; ++v)
        if (ranked(row[v]) > ranked(row[best])) best = v;
      if (best == o.eos_id) continue;
      result[static_cast<std::size_t>(sentence[r])].push_back(best);
      next_parent.push_back(static_cast<std::int64_t>(r));
      next_sentence.push_back(sentence[r]);
      next_token.push_back(best);
    }
    parent.swap(next_parent);
    sentence.swap(next_sentence);
    token.swap(next_token);
  }
  return result;
}

std::vector<std::vector<std::int32_t>> beam_search(const std::vector<std::int64_t>& max_tokens,
                                                   const SearchOptions& o,
                                                   const StepScorer& scorer) {
  check_options(o);
  const std::int64_t K = o.beam;
  std::vector<Finished> finished(max_tokens.size());
  std::vector<Hypothesis> live;
  std::vector<std::int64_t> parent;
  std::vector<std::int32_t> token;
  for (std::size_t s = 0; s < max_tokens.size(); ++s) {
    live.push_back({static_cast<std::int64_t>(s), 0.0, {}});
    parent.push_back(static_cast<std::int64_t>(s));
    token.push_back(o.bos_id);
  }
  std::vector<double> log_probs;
  std::vector<Candidate> candidates;
  std::vector<std::int32_t> order;
  for (std::int64_t step = 0; !live.empty(); ++step) {
    scorer(parent, token, log_probs);
    check_scores(log_probs, live.size(), o.vocab);
    const double length_norm = std::pow(static_cast<double>(step + 1), o.length_penalty);

    std::vector<Hypothesis> next_live;
    std::vector<std::int64_t> next_parent;
    std::vector<std::int32_t> next_token;
    for (std::size_t g0 = 0, g1 = 0; g0 < live.size(); g0 = g1) {
      const std::int64_t s = live[g0].sentence;  // rows [g0, g1) belong to sentence s
      while (g1 < live.size() && live[g1].sentence == s) ++g1;
      const bool forced = step >= max_tokens[static_cast<std::size_t>(s)];
      candidates.clear();
      for (std::size_t r = g0; r < g1; ++r) {
        const double* row = log_probs.data() + r * static_cast<std::size_t>(o.vocab);
        if (forced)
          candidates.push_back(
              {live[r].score + ranked(row[o.eos_id]), static_cast<std::int64_t>(r), o.eos_id});
        else
          best_extensions(candidates, order, row, o.vocab, live[r].score,
                          static_cast<std::int64_t>(r), 2 * K);
      }
      const auto n = std::min<std::size_t>(candidates.size(), static_cast<std::size_t>(2 * K));
      std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(n),
                        candidates.end(), better);

      Finished& done = finished[static_cast<std::size_t>(s)];
      std::int64_t kept = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const Candidate& c = candidates[i];
        const Hypothesis& h = live[static_cast<std::size_t>(c.row)];
        if (c.token == o.eos_id) {
          // An eos outside the first K would not have survived pruning: fairseq ignores it.
          if (static_cast<std::int64_t>(i) >= K) continue;
          const double normalised = c.score / length_norm;
          ++done.count;
          if (!done.any || normalised > done.best) {
            done.any = true;
            done.best = normalised;
            done.tokens = h.tokens;
          }
        } else if (kept < K) {
          next_live.push_back({s, c.score, h.tokens});
          next_live.back().tokens.push_back(c.token);
          next_parent.push_back(c.row);
          next_token.push_back(c.token);
          ++kept;
        }
      }
      if (done.count >= K || kept == 0) {  // sentence finished: drop its live rows
        next_live.resize(next_live.size() - static_cast<std::size_t>(kept));
        next_parent.resize(next_live.size());
        next_token.resize(next_live.size());
      }
    }
    live.swap(next_live);
    parent.swap(next_parent);
    token.swap(next_token);
  }

  std::vector<std::vector<std::int32_t>> result;
  for (Finished& f : finished) result.push_back(std::move(f.tokens));
  return result;
}

}  // namespace tr
