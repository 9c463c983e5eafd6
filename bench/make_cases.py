"""Generate bench/cases.jsonl: realistic (gold, pred, expected) cases for bench/verifiers.py.

    python bench/make_cases.py [--gsm8k ../shared/data/gsm8k_test.jsonl] [-o bench/cases.jsonl]

Deterministic (seeded). Mixes:
- GSM8K test problems (MIT licence, OpenAI): the reference solution (calculator annotations
  removed) as the reasoning, with the endings small models actually write: "The answer is X.",
  "\\boxed{X}", "#### X" (thousands commas included), "$X", "X dollars"; wrong endings (an
  intermediate number, an off-by-some value); a wrong final answer followed by a "check" that
  mentions the right number (a last-number fallback calls it correct); truncated reasoning
  with no final answer (expected incorrect: nothing was stated).
- hand-written LaTeX cases: fractions, decimals at several precisions, intervals, sets, tuples,
  lists, expressions, roots, pi, equations, percentages, units.
Expected labels follow the policies in docs/verifiers.md (e.g. "50%" is 50, not 0.5).
"""
from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
C, I, U = "correct", "incorrect", "unknown"

LATEX = [  # (gold, pred, expected)
    ("\\frac{1}{2}", "The probability is $\\boxed{\\frac{1}{2}}$.", C),
    ("\\frac{1}{2}", "So the answer is $\\dfrac12$.", C),
    ("\\frac{1}{2}", "\\boxed{0.5}", C),
    ("\\frac{1}{2}", "\\boxed{1/2}", C),
    ("\\frac{1}{2}", "\\boxed{\\frac{2}{4}}", C),
    ("\\frac{1}{2}", "\\boxed{\\frac{1}{3}}", I),
    ("-\\frac{1}{2}", "The answer is $-\\frac{1}{2}$.", C),
    ("-\\frac{1}{2}", "\\boxed{\\frac{1}{2}}", I),
    ("\\frac{1}{3}", "\\boxed{0.333}", I),
    ("\\frac{1}{3}", "\\boxed{0.3333}", C),
    ("\\frac{1}{3}", "\\boxed{0.3333333}", C),
    ("\\frac{1}{3}", "\\boxed{0.33}", I),
    ("\\frac{2}{3}", "\\boxed{0.6667}", C),
    ("\\frac{2}{3}", "\\boxed{0.6666}", I),
    ("\\frac{7}{8}", "\\boxed{0.875}", C),
    ("\\frac{7}{8}", "\\boxed{0.88}", I),
    ("0.25", "\\boxed{\\frac{1}{4}}", C),
    ("2.5", "The answer is 2.50.", C),
    ("2.5", "The answer is 2.05.", I),
    ("(1,2]", "The solution set is $\\boxed{(1, 2]}$.", C),
    ("(1,2]", "\\boxed{[1,2]}", I),
    ("(1,2]", "\\boxed{(1,2)}", I),
    ("[-3, 5)", "\\boxed{[-3,5)}", C),
    ("(-\\infty, 0)", "\\boxed{(-\\infty,0)}", C),
    ("(3, \\infty)", "\\boxed{x > 3}", C),
    ("[3, \\infty)", "\\boxed{x > 3}", I),
    ("(-\\infty, 1) \\cup (2, \\infty)", "\\boxed{(2,\\infty)\\cup(-\\infty,1)}", C),
    ("\\{1, 2, 3\\}", "\\boxed{\\{3, 2, 1\\}}", C),
    ("\\{1, 2, 3\\}", "\\boxed{\\{1, 2\\}}", I),
    ("2, 3", "The solutions are $x = 2$ and $x = 3$, so \\boxed{3, 2}.", C),
    ("2, 3", "\\boxed{x = 2 \\text{ or } x = 3}", C),
    ("2, 3", "\\boxed{2, 4}", I),
    ("10, 4, 2", "\\boxed{4, 12, 2}", I),
    ("10, 4, 2", "\\boxed{2, 4, 10}", C),
    ("(1, 2)", "The point is \\boxed{(1,2)}.", C),
    ("(1, 2)", "The point is \\boxed{(2,1)}.", I),
    ("(1, 2, 3)", "\\boxed{(1, 2, 3)}", C),
    ("(1, 2, 3)", "\\boxed{(1, 3, 2)}", I),
    ("x^2-1", "\\boxed{(x-1)(x+1)}", C),
    ("x^2-1", "\\boxed{x^2+1}", I),
    ("x^2-1", "\\boxed{(x+1)(x-1)}", C),
    ("(x+1)^2", "\\boxed{x^2+2x+1}", C),
    ("(x+1)^2", "\\boxed{x^2+x+1}", I),
    ("2x+2", "\\boxed{2(x+1)}", C),
    ("\\frac{x}{2}", "\\boxed{\\frac{1}{2}x}", C),
    ("3x^2", "\\boxed{3x^3}", I),
    ("\\sqrt{8}", "\\boxed{2\\sqrt{2}}", C),
    ("2\\sqrt{2}", "\\boxed{\\sqrt{8}}", C),
    ("\\sqrt{2}", "\\boxed{2}", I),
    ("\\frac{\\sqrt{3}}{2}", "\\boxed{\\frac{1}{2}\\sqrt{3}}", C),
    ("\\frac{\\sqrt{3}}{2}", "\\boxed{\\frac{\\sqrt{3}}{3}}", I),
    ("2\\pi", "\\boxed{2\\pi}", C),
    ("2\\pi", "\\boxed{\\pi}", I),
    ("\\pi", "The answer is approximately 3.1416.", C),
    ("\\pi", "\\boxed{3.14}", I),
    ("6\\pi", "\\boxed{\\pi \\cdot 6}", C),
    ("y = 2x + 1", "\\boxed{y = 2x+1}", C),
    ("y = 2x + 1", "\\boxed{2x+1}", C),
    ("x + y = 1", "\\boxed{2x + 2y = 2}", C),
    ("x + y = 1", "\\boxed{x - y = 1}", I),
    ("5", "\\boxed{x = 5}", C),
    ("5", "\\boxed{x = 6}", I),
    ("50", "The answer is 50\\%.", C),
    ("50", "\\boxed{50\\%}", C),
    ("0.5", "\\boxed{50\\%}", I),
    ("25", "\\boxed{25\\%}", C),
    ("90", "\\boxed{90^\\circ}", C),
    ("12", "\\boxed{12 \\text{ cm}}", C),
    ("12", "\\boxed{12 \\text{ cm}^2}", C),
    ("1000", "\\boxed{1,000}", C),
    ("1000", "\\boxed{1,001}", I),
    ("1000000", "The answer is 1,000,000.", C),
    ("3", "\\boxed{\\frac{9}{3}}", C),
    ("18", "\\boxed{9 \\cdot 2}", C),
    ("-7", "\\boxed{-7}", C),
    ("-7", "\\boxed{7}", I),
    ("e^{2}", "\\boxed{e^2}", C),
    ("\\log_2 8", "\\boxed{3}", C),
    ("Monday", "The answer is \\boxed{\\text{Monday}}.", C),
    ("Monday", "The answer is \\boxed{\\text{Tuesday}}.", I),
    # two different boxes: the completion states two final answers (docs: reason "ambiguous")
    ("\\frac{1}{4}", "First I got \\boxed{\\frac{1}{2}} but rechecking, \\boxed{\\frac{1}{4}}", U),
    ("\\frac{1}{4}", "First I got \\boxed{\\frac{1}{4}} but rechecking, \\boxed{\\frac{1}{2}}", U),
    ("72", "72", C),
    ("72", "$72$", C),
    ("72", "72.0", C),
    ("72", "73", I),
    ("\\frac{3}{4}", "3/4", C),
    ("\\frac{3}{4}", "0.75", C),
    ("\\frac{3}{4}", "0.7", I),
    ("4", "\\boxed{2^2}", C),
    ("1024", "\\boxed{2^{10}}", C),
    ("120", "\\boxed{5!}", C),
    ("\\binom{5}{2}", "\\boxed{10}", C),
]

_CALC = re.compile(r"<<[^>]*>>")
_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def _commas(n: str) -> str:
    return f"{int(n):,}" if re.fullmatch(r"\d+", n) else n


def gsm8k_cases(path: Path, n: int, rng: random.Random) -> list[dict]:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    cases = []
    for i, row in enumerate(rows[:n]):
        body, ans = row["answer"].rsplit("####", 1)
        gold = ans.strip().replace(",", "")
        lines = [_CALC.sub("", ln).strip() for ln in body.strip().splitlines() if ln.strip()]
        reasoning = "\n".join(lines)
        nums = [x for x in _NUM.findall(" ".join(lines[:-1])) if x != gold]
        wrong = rng.choice(nums) if nums else str(int(gold) + rng.choice([1, 2, 10]))
        off = str(int(gold) + rng.choice([-10, -1, 1, 2, 100]))
        src = f"gsm8k_test[{i}]"
        correct_endings = [
            f"The answer is {gold}.", f"So the answer is {gold}.", f"\\boxed{{{gold}}}",
            f"Final answer: {gold}", f"#### {_commas(gold)}", f"The answer is ${_commas(gold)}.",
            f"The final answer is $\\boxed{{{gold}}}$.", f"The answer is {gold} dollars.",
        ]
        for ending in rng.sample(correct_endings, 3):
            cases.append({"gold": gold, "pred": f"{reasoning}\n{ending}", "expected": C, "source": src})
        cases.append({"gold": gold, "pred": f"{reasoning}\nThe answer is {off}.", "expected": I,
                      "source": src})
        kind = i % 4
        if kind == 0:  # wrong final statement, right number mentioned after it
            pred = f"{reasoning}\nThe answer is {wrong}.\nLet me verify: the total was {gold}."
            cases.append({"gold": gold, "pred": pred, "expected": I, "source": src})
        elif kind == 1:  # wrong answer in a box
            cases.append({"gold": gold, "pred": f"{reasoning}\n\\boxed{{{wrong}}}", "expected": I,
                          "source": src})
        elif kind == 2:  # truncated: no final answer stated
            cut = "\n".join(lines[:max(1, len(lines) - 1)])
            cases.append({"gold": gold, "pred": cut + "\nNow we need to", "expected": I,
                          "source": src})
        else:  # rambling, the right number appears last but is never stated as the answer
            pred = (f"Hmm, there are many numbers here: {wrong}, {off} and {gold}. "
                    "I am not sure which one they want")
            cases.append({"gold": gold, "pred": pred, "expected": I, "source": src})
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gsm8k", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test.jsonl")
    ap.add_argument("-n", type=int, default=62, help="GSM8K problems to use (5 cases each)")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "cases.jsonl")
    args = ap.parse_args()
    rng = random.Random(20240601)
    cases = gsm8k_cases(args.gsm8k, args.n, rng)
    cases += [{"gold": g, "pred": p, "expected": e, "source": "latex"} for g, p, e in LATEX]
    rng.shuffle(cases)
    with open(args.output, "w") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {args.output}")


if __name__ == "__main__":
    main()
