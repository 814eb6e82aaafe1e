// Corpus BLEU against sacreBLEU's defaults. Literal values come from hand computation (noted
// inline) or from tests/trainer/bleu_reference.py, an independent Python implementation of
// the same rules with Python's `re` (sacreBLEU itself is not installed here).
#include <gtest/gtest.h>

#include <cmath>

#include "layers/error.h"
#include "trainer/bleu.h"

namespace tr {
namespace {

struct TokenCase {
  const char* in;
  const char* out;
};

TEST(Tokenize13a, MatchesReferenceRules) {
  const TokenCase cases[] = {
      {"Hello, world!", "Hello , world !"},
      // Period and comma stay inside numbers; "$" and brackets split.
      {"It costs $1,000.50 (approx.) today.", "It costs $ 1,000.50 ( approx . ) today ."},
      {"3.14, 2,5 and 1.5.", "3.14 , 2,5 and 1.5 ."},
      {"1.5,000.-", "1.5,000 . -"},
      // Entities are unescaped one after another, so &amp;lt; ends as "<".
      {"He said &quot;no&quot; &amp; left &lt;now&gt;.", "He said \" no \" & left < now > ."},
      {"&amp;lt; stays one symbol", "< stays one symbol"},
      {"A&amp;B&quot;", "A & B \""},
      // Hyphens stay inside words; a dash after a digit splits.
      {"well-known 1990-2000 state-of-the-art", "well-known 1990 - 2000 state-of-the-art"},
      {"2-", "2 -"},
      // Each pair rule consumes both characters of a match: the second is not re-examined.
      {"a,,b ..5 5.-3 1.,a x-1-2-3 (1.5)", "a , , b . .5 5 . -3 1 . , a x-1 - 2 - 3 ( 1.5 )"},
      {",.5", ", .5"},
      {"a.b,c ... end.,", "a . b , c . . . end . ,"},
      {"e.g. U.S.A. Mr. X", "e . g . U . S . A . Mr . X"},
      {"I'm a student.", "I'm a student ."},
      // Hyphenated line ends join; <skipped> goes before entities are unescaped.
      {"line ending with a hyphen-\nand a join", "line ending with a hyphenand a join"},
      {"-\n-\n", "-"},
      {"drop <skipped> this", "drop this"},
      {"x&lt;skipped>y", "x < skipped > y"},
      {"[brackets] {braces} back\\slash ^caret_ `tick` |pipe| ~tilde",
       "[ brackets ] { braces } back \\ slash ^ caret _ ` tick ` | pipe | ~ tilde"},
      // Python's whitespace: tab, no-break space, ideographic space.
      {"tab\tand\u00a0nbsp\u3000ideographic space", "tab and nbsp ideographic space"},
      {"caf\u00e9, na\u00efve. \u00fcber-cool", "caf\u00e9 , na\u00efve . \u00fcber-cool"},
      {"trailing spaces   \n", "trailing spaces"},
      {"", ""},
  };
  for (const TokenCase& c : cases) EXPECT_EQ(tokenize_13a(c.in), c.out) << "input: " << c.in;
}

TEST(CorpusBleu, IdenticalIsHundred) {
  const BleuScore s = corpus_bleu({"The cat sat on the mat."}, {"The cat sat on the mat."});
  EXPECT_NEAR(s.score, 100.0, 1e-9);
  EXPECT_EQ(s.sys_len, 7);  // "." is a token
  EXPECT_EQ(s.ref_len, 7);
  EXPECT_DOUBLE_EQ(s.bp, 1.0);
  for (double p : s.precisions) EXPECT_DOUBLE_EQ(p, 100.0);
}

TEST(CorpusBleu, HandComputedPrecisions) {
  // 4/5, 3/4, 2/3, 1/2 -> geometric mean (1/5)^(1/4).
  const BleuScore s = corpus_bleu({"a b c d e"}, {"a b c d f"});
  EXPECT_NEAR(s.score, 100 * std::pow(0.2, 0.25), 1e-9);
  EXPECT_NEAR(s.score, 66.87403049764218, 1e-9);
  EXPECT_DOUBLE_EQ(s.precisions[0], 80.0);
  EXPECT_DOUBLE_EQ(s.precisions[1], 75.0);
  EXPECT_DOUBLE_EQ(s.precisions[3], 50.0);
}

TEST(CorpusBleu, CountsAreCorpusLevelWithBrevityPenalty) {
  // Corpus counts 9/10, 7/8, 6/6, 5/5; c = 10 < r = 11 -> BP exp(1 - 11/10). The average of
  // sentence scores would be different (the second sentence alone scores 0).
  const BleuScore s = corpus_bleu({"a b c d e f g h", "x y"}, {"a b c d e f g h", "x z q"});
  const double expected = std::exp(-0.1) * 100 * std::pow(0.9 * 0.875, 0.25);
  EXPECT_NEAR(s.score, expected, 1e-9);
  EXPECT_NEAR(s.score, 85.23798850354147, 1e-9);
  EXPECT_NEAR(s.bp, std::exp(-0.1), 1e-15);
  EXPECT_EQ(s.sys_len, 10);
  EXPECT_EQ(s.ref_len, 11);
}

TEST(CorpusBleu, ExpSmoothingForOrdersWithoutMatches) {
  // 3-grams 0 of 2 -> 100 / (2 * 2); 4-grams 0 of 1 -> 100 / (4 * 1).
  const BleuScore s = corpus_bleu({"the cat the mat"}, {"the cat sat on the mat"});
  EXPECT_DOUBLE_EQ(s.precisions[0], 100.0);
  EXPECT_NEAR(s.precisions[1], 200.0 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(s.precisions[2], 25.0);
  EXPECT_DOUBLE_EQ(s.precisions[3], 25.0);
  EXPECT_NEAR(s.bp, std::exp(-0.5), 1e-15);
  EXPECT_NEAR(s.score, std::exp(-0.5) * 100 * std::pow(1.0 / 24, 0.25), 1e-9);
  EXPECT_NEAR(s.score, 27.403115968356843, 1e-9);
}

TEST(CorpusBleu, ZeroCases) {
  // No n-gram of any order matches: sacreBLEU's early exit.
  const BleuScore none = corpus_bleu({"abc def"}, {"xyz uvw"});
  EXPECT_EQ(none.score, 0.0);
  for (double p : none.precisions) EXPECT_EQ(p, 0.0);
  EXPECT_DOUBLE_EQ(none.bp, 1.0);
  // No hypothesis 3-grams at all: the loop stops, later orders stay 0, the score is 0.
  const BleuScore short_hyps = corpus_bleu({"a b", "c"}, {"a b", "c"});
  EXPECT_EQ(short_hyps.score, 0.0);
  EXPECT_DOUBLE_EQ(short_hyps.precisions[1], 100.0);
  EXPECT_EQ(short_hyps.precisions[2], 0.0);
  // Empty hypothesis: BP 0.
  const BleuScore empty = corpus_bleu({""}, {"a b c d"});
  EXPECT_EQ(empty.score, 0.0);
  EXPECT_EQ(empty.bp, 0.0);
}

TEST(CorpusBleu, MixedCorpusMatchesReference) {
  const BleuScore s =
      corpus_bleu({"The quick brown fox jumps over the lazy dog.", "It costs $1,000.50, he said.",
                   "A state-of-the-art system &amp; more", "Hello there"},
                  {"The quick brown fox jumped over the lazy dog.", "He said it costs $1,000.50.",
                   "A state-of-the-art system & more!", "Hello there, general Kenobi"});
  EXPECT_NEAR(s.score, 50.59301464146175, 1e-9);
  EXPECT_NEAR(s.precisions[0], 84.0, 1e-12);
  EXPECT_NEAR(s.precisions[1], 66.66666666666667, 1e-12);
  EXPECT_NEAR(s.precisions[2], 52.94117647058823, 1e-12);
  EXPECT_NEAR(s.precisions[3], 35.714285714285715, 1e-12);
  EXPECT_NEAR(s.bp, 0.8869204367171574, 1e-15);
  EXPECT_EQ(s.sys_len, 25);
  EXPECT_EQ(s.ref_len, 28);
  EXPECT_EQ(format_bleu(s),
            "BLEU = 50.59 84.0/66.7/52.9/35.7 (BP = 0.887 ratio = 0.893 hyp_len = 25 "
            "ref_len = 28)");
}

TEST(CorpusBleu, StatsAddUpAcrossShards) {
  const std::vector<std::string> hyps = {"a b c d e", "the cat the mat", "x y z"};
  const std::vector<std::string> refs = {"a b c d f", "the cat sat on the mat", "x y w"};
  BleuStats sum = corpus_bleu_stats({hyps[0]}, {refs[0]});
  sum += corpus_bleu_stats({hyps[1], hyps[2]}, {refs[1], refs[2]});
  const BleuScore whole = corpus_bleu(hyps, refs), sharded = bleu_from_stats(sum);
  EXPECT_EQ(whole.score, sharded.score);
  EXPECT_EQ(whole.sys_len, sharded.sys_len);
}

TEST(CorpusBleu, MismatchedCountsAreAnError) {
  EXPECT_THROW(corpus_bleu({"a", "b"}, {"a"}), UserError);
}

}  // namespace
}  // namespace tr
