#include "trainer/bleu.h"

#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "layers/error.h"

namespace tr {

namespace {

// Decodes the UTF-8 code point at s[i] and its byte length; an invalid byte decodes as itself
// (length 1), which is never whitespace.
char32_t decode_utf8(std::string_view s, std::size_t i, std::size_t& length) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  length = 1;
  int extra = 0;
  char32_t cp = b0;
  if (b0 >= 0xC0 && b0 < 0xE0) {
    extra = 1;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 < 0xF0) {
    extra = 2;
    cp = b0 & 0x0F;
  } else if (b0 >= 0xF0 && b0 < 0xF8) {
    extra = 3;
    cp = b0 & 0x07;
  } else {
    return b0;
  }
  if (i + extra >= s.size()) return b0;  // truncated sequence
  for (int k = 1; k <= extra; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return b0;
    cp = (cp << 6) | (b & 0x3F);
  }
  length = static_cast<std::size_t>(extra) + 1;
  return cp;
}

// Python's str.isspace(), which str.split() and str.strip() use: sacreBLEU splits with them.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Splits on runs of Python whitespace, dropping empty pieces (str.split() without arguments).
std::vector<std::string_view> split_whitespace(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = std::string_view::npos, i = 0;
  while (i < s.size()) {
    std::size_t length;
    const bool space = is_python_space(decode_utf8(s, i, length));
    if (space && start != std::string_view::npos) {
      out.push_back(s.substr(start, i - start));
      start = std::string_view::npos;
    } else if (!space && start == std::string_view::npos) {
      start = i;
    }
    i += length;
  }
  if (start != std::string_view::npos) out.push_back(s.substr(start));
  return out;
}

std::string_view rstrip(std::string_view s) {
  std::size_t end = 0, i = 0;  // end of the last non-space code point
  while (i < s.size()) {
    std::size_t length;
    if (!is_python_space(decode_utf8(s, i, length))) end = i + length;
    i += length;
  }
  return s.substr(0, end);
}

// str.replace: every non-overlapping occurrence, left to right.
void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  std::size_t pos = 0;
  for (std::size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  if (pos == 0) return;
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_period_or_comma(char c) {
  return c == '.' || c == ',';
}

// The first 13a rule's class: ASCII punctuation and symbols except ' , - . (space is in it
// too; padding it is harmless).
bool is_split_symbol(char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

// The three pair rules are regex substitutions whose matches consume two characters, so the
// second character of a match is not looked at again: the scans below step over it the same
// way. They work on bytes: every character involved is ASCII, and UTF-8 never puts ASCII
// bytes inside a multi-byte character, so the result is the same as on code points.

// ([^0-9])([.,]) -> "\1 \2 "
std::string split_period_after_non_digit(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!is_digit(s[i]) && i + 1 < s.size() && is_period_or_comma(s[i + 1])) {
      out += s[i];
      out += ' ';
      out += s[++i];
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

// ([.,])([^0-9]) -> " \1 \2"
std::string split_period_before_non_digit(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (is_period_or_comma(s[i]) && i + 1 < s.size() && !is_digit(s[i + 1])) {
      out += ' ';
      out += s[i];
      out += ' ';
      out += s[++i];
    } else {
      out += s[i];
    }
  }
  return out;
}

// ([0-9])(-) -> "\1 \2 "
std::string split_dash_after_digit(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (is_digit(s[i]) && i + 1 < s.size() && s[i + 1] == '-') {
      out += s[i];
      out += " - ";
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

// n-grams of orders 1..4 keyed by their tokens joined with spaces (tokens hold no whitespace,
// so keys of different orders never collide).
using NgramCounts = std::unordered_map<std::string, std::int64_t>;

NgramCounts count_ngrams(const std::vector<std::string_view>& tokens) {
  NgramCounts counts;
  const auto n_tokens = static_cast<std::int64_t>(tokens.size());
  for (int n = 1; n <= kBleuOrder; ++n) {
    for (std::int64_t i = 0; i + n <= n_tokens; ++i) {
      std::string key(tokens[i]);
      for (int k = 1; k < n; ++k) (key += ' ') += tokens[i + k];
      ++counts[key];
    }
  }
  return counts;
}

int ngram_order(const std::string& key) {
  int n = 1;
  for (char c : key) n += c == ' ';
  return n;
}

// sacreBLEU floors log(0) to this instead of -inf.
double floored_log(double x) {
  return x == 0.0 ? -9999999999.0 : std::log(x);
}

}  // namespace

BleuStats& BleuStats::operator+=(const BleuStats& other) {
  sys_len += other.sys_len;
  ref_len += other.ref_len;
  for (int n = 0; n < kBleuOrder; ++n) {
    correct[n] += other.correct[n];
    total[n] += other.total[n];
  }
  return *this;
}

std::string tokenize_13a(std::string_view line) {
  std::string s(rstrip(line));
  replace_all(s, "<skipped>", "");
  replace_all(s, "-\n", "");
  replace_all(s, "\n", " ");
  // Sequential, so "&amp;lt;" becomes "<" as in sacreBLEU.
  replace_all(s, "&quot;", "\"");
  replace_all(s, "&amp;", "&");
  replace_all(s, "&lt;", "<");
  replace_all(s, "&gt;", ">");

  std::string padded;
  for (char c : " " + s + " ") {  // sacreBLEU pads the line with a space on each side
    if (is_split_symbol(c)) {
      padded += ' ';
      padded += c;
      padded += ' ';
    } else {
      padded += c;
    }
  }
  s = split_dash_after_digit(split_period_before_non_digit(split_period_after_non_digit(padded)));

  std::string out;
  for (std::string_view token : split_whitespace(s)) {
    if (!out.empty()) out += ' ';
    out += token;
  }
  return out;
}

BleuStats segment_bleu_stats(std::string_view hypothesis, std::string_view reference) {
  const std::string hyp = tokenize_13a(hypothesis), ref = tokenize_13a(reference);
  const std::vector<std::string_view> hyp_tokens = split_whitespace(hyp),
                                      ref_tokens = split_whitespace(ref);
  BleuStats stats;
  stats.sys_len = static_cast<std::int64_t>(hyp_tokens.size());
  stats.ref_len = static_cast<std::int64_t>(ref_tokens.size());
  const NgramCounts ref_counts = count_ngrams(ref_tokens);
  for (const auto& [ngram, count] : count_ngrams(hyp_tokens)) {
    const int n = ngram_order(ngram) - 1;
    stats.total[n] += count;
    const auto it = ref_counts.find(ngram);
    if (it != ref_counts.end()) stats.correct[n] += std::min(count, it->second);
  }
  return stats;
}

BleuStats corpus_bleu_stats(const std::vector<std::string>& hypotheses,
                            const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size())
    throw UserError("BLEU: " + std::to_string(hypotheses.size()) + " hypotheses for " +
                    std::to_string(references.size()) + " references");
  BleuStats stats;
  for (std::size_t i = 0; i < hypotheses.size(); ++i)
    stats += segment_bleu_stats(hypotheses[i], references[i]);
  return stats;
}

BleuScore bleu_from_stats(const BleuStats& stats) {
  BleuScore s;
  s.sys_len = stats.sys_len;
  s.ref_len = stats.ref_len;
  if (stats.sys_len < stats.ref_len)
    s.bp = stats.sys_len > 0 ? std::exp(1.0 - static_cast<double>(stats.ref_len) /
                                                  static_cast<double>(stats.sys_len))
                             : 0.0;
  else
    s.bp = 1.0;

  bool any_match = false;
  for (std::int64_t c : stats.correct) any_match = any_match || c > 0;
  if (!any_match) return s;  // score and precisions 0, as sacreBLEU's early exit

  double smooth = 1.0;
  for (int n = 0; n < kBleuOrder; ++n) {
    if (stats.total[n] == 0) break;  // this and higher orders keep precision 0
    if (stats.correct[n] == 0) {
      smooth *= 2;
      s.precisions[n] = 100.0 / (smooth * static_cast<double>(stats.total[n]));
    } else {
      s.precisions[n] =
          100.0 * static_cast<double>(stats.correct[n]) / static_cast<double>(stats.total[n]);
    }
  }
  double log_sum = 0;
  for (double p : s.precisions) log_sum += floored_log(p);
  s.score = s.bp * std::exp(log_sum / kBleuOrder);
  return s;
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::string>& references) {
  return bleu_from_stats(corpus_bleu_stats(hypotheses, references));
}

std::string format_bleu(const BleuScore& s) {
  const double ratio =
      s.ref_len > 0 ? static_cast<double>(s.sys_len) / static_cast<double>(s.ref_len) : 0.0;
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld "
                "ref_len = %lld)",
                s.score, s.precisions[0], s.precisions[1], s.precisions[2], s.precisions[3], s.bp,
                ratio, static_cast<long long>(s.sys_len), static_cast<long long>(s.ref_len));
  return buf;
}

}  // namespace tr
