#!/usr/bin/env python3
"""Independent reference for trainer/bleu.cpp: sacreBLEU's default corpus BLEU (13a
tokenizer, BLEU-4, 'exp' smoothing), written from its documented rules with Python's `re`,
which is what sacreBLEU itself runs. Prints the values test_bleu.cpp hard-codes.

Usage: python3 tests/trainer/bleu_reference.py   (or --check to compare with sacrebleu when
it is installed).
"""
import math
import re
import sys
from collections import Counter

RULES = [
    (r"([\{-\~\[-\` -\&\(-\+\:-\@\/])", r" \1 "),  # symbols except ' , - .
    (r"([^0-9])([\.,])", r"\1 \2 "),  # period/comma not after a digit
    (r"([\.,])([^0-9])", r" \1 \2"),  # period/comma not before a digit
    (r"([0-9])(-)", r"\1 \2 "),  # dash after a digit
]


def tok13a(line):
    line = line.rstrip()
    for a, b in (("<skipped>", ""), ("-\n", ""), ("\n", " "), ("&quot;", '"'),
                 ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
        line = line.replace(a, b)
    line = " " + line + " "
    for pattern, repl in RULES:
        line = re.sub(pattern, repl, line)
    return " ".join(line.split())


def ngrams(tokens):
    return Counter(tuple(tokens[i:i + n]) for n in range(1, 5)
                   for i in range(len(tokens) - n + 1))


def corpus_bleu(hyps, refs):
    sys_len = ref_len = 0
    correct, total = [0] * 4, [0] * 4
    for h, r in zip(hyps, refs):
        ht, rt = tok13a(h).split(), tok13a(r).split()
        sys_len += len(ht)
        ref_len += len(rt)
        hc, rc = ngrams(ht), ngrams(rt)
        for g, c in hc.items():
            total[len(g) - 1] += c
            correct[len(g) - 1] += min(c, rc.get(g, 0))
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len else 0.0)
    prec = [0.0] * 4
    if not any(correct):
        return 0.0, prec, bp, sys_len, ref_len
    smooth = 1.0
    for n in range(4):
        if total[n] == 0:
            break
        if correct[n] == 0:
            smooth *= 2
            prec[n] = 100.0 / (smooth * total[n])
        else:
            prec[n] = 100.0 * correct[n] / total[n]
    logs = [math.log(p) if p else -9999999999 for p in prec]
    return bp * math.exp(sum(logs) / 4), prec, bp, sys_len, ref_len


TOKENIZER_CASES = [
    "Hello, world!",
    "It costs $1,000.50 (approx.) today.",
    "He said &quot;no&quot; &amp; left &lt;now&gt;.",
    "&amp;lt; stays one symbol",
    "well-known 1990-2000 state-of-the-art",
    "line ending with a hyphen-\nand a join",
    "drop <skipped> this",
    "I'm a student.",
    "3.14, 2,5 and 1.5.",
    "a.b,c ... end.,",
    "e.g. U.S.A. Mr. X",
    "tab\tand\u00a0nbsp\u3000ideographic space",
    "caf\u00e9, na\u00efve. \u00fcber-cool",
    "[brackets] {braces} back\\slash ^caret_ `tick` |pipe| ~tilde",
    "trailing spaces   \n",
    "",
]

CORPORA = {
    "identical": (["The cat sat on the mat."], ["The cat sat on the mat."]),
    "short": (["the cat"], ["the cat sat on the mat"]),
    "no4gram": (["the cat the mat"], ["the cat sat on the mat"]),
    "mixed": (
        ["The quick brown fox jumps over the lazy dog.",
         "It costs $1,000.50, he said.",
         "A state-of-the-art system &amp; more",
         "Hello there"],
        ["The quick brown fox jumped over the lazy dog.",
         "He said it costs $1,000.50.",
         "A state-of-the-art system & more!",
         "Hello there, general Kenobi"]),
    "nomatch": (["abc def"], ["xyz uvw"]),
    "tooshort": (["a b", "c"], ["a b", "c"]),
}


def main():
    if "--check" in sys.argv:
        import sacrebleu  # noqa: only where installed
        for name, (h, r) in CORPORA.items():
            print(name, sacrebleu.corpus_bleu(h, [r]).score, corpus_bleu(h, r)[0])
        return
    for line in TOKENIZER_CASES:
        print(repr(line), "->", repr(tok13a(line)))
    for name, (h, r) in CORPORA.items():
        score, prec, bp, sl, rl = corpus_bleu(h, r)
        print(f"{name}: score {score!r} prec {prec!r} bp {bp!r} sys {sl} ref {rl}")


if __name__ == "__main__":
    main()
