// Corpus BLEU as sacreBLEU computes it by default (sacreBLEU 2.x `BLEU()`): BLEU-4 on
// mixed-case text, the '13a' tokenizer (mteval-v13a rules), n-gram counts summed over the
// corpus, brevity penalty exp(1 - r/c) when c < r, 'exp' smoothing, score in [0, 100].
//
// 'exp' smoothing (mteval's NIST method) only matters when some order has no match: the k-th
// such order gets precision 1 / (2^k * total). With no match of any order the score is 0, and
// an order with no hypothesis n-grams at all (every segment shorter than n) makes it 0 too.
//
// Statistics are additive, so data-parallel evaluation sums each rank's BleuStats and scores
// the sum once.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tr {

constexpr int kBleuOrder = 4;

// Sufficient statistics of a corpus (sacreBLEU's per-segment stats, summed).
struct BleuStats {
  std::int64_t sys_len = 0, ref_len = 0;
  std::array<std::int64_t, kBleuOrder> correct{}, total{};  // clipped matches, hyp n-grams
  BleuStats& operator+=(const BleuStats& other);
};

struct BleuScore {
  double score = 0;                             // 0..100
  std::array<double, kBleuOrder> precisions{};  // percent, smoothed as in sacreBLEU
  double bp = 0;                                // brevity penalty
  std::int64_t sys_len = 0, ref_len = 0;        // tokens after 13a tokenization
};

// mteval-v13a tokenization as sacreBLEU's Tokenizer13a applies it (after its rstrip): returns
// the tokens joined by single spaces. Input is UTF-8.
std::string tokenize_13a(std::string_view line);

// Statistics of one hypothesis against its one reference.
BleuStats segment_bleu_stats(std::string_view hypothesis, std::string_view reference);
// Sums segment statistics; throws UserError when the counts of hypotheses and references
// differ. An empty reference (sacreBLEU refuses those) counts as zero tokens.
BleuStats corpus_bleu_stats(const std::vector<std::string>& hypotheses,
                            const std::vector<std::string>& references);
BleuScore bleu_from_stats(const BleuStats& stats);

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::string>& references);

// sacreBLEU's verbose line without the signature, e.g.
// "BLEU = 26.84 60.0/33.3/20.0/11.1 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)".
std::string format_bleu(const BleuScore& score);

}  // namespace tr
