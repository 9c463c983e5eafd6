"""Scripted backend: deterministic fake completions for fast unit tests ONLY.

It reads the arithmetic question out of a solve prompt and answers right or wrong depending on
the per-sample seed (so pairs form), and answers pose prompts with a small problem + program.
The real model path is tested separately (tests marked `model`).
"""
from __future__ import annotations

import os
import re
import sys
import time
from typing import Sequence

from selfplay.backends.base import Completion, Messages, SamplingParams, cut_at_stop

_Q = re.compile(r"Problem: ((?:(?!Problem: ).)*?)\nSolution:\s*$", re.S)  # the last problem shown
_POT_Q = re.compile(r"^Write a Python program.*Problem: ((?:(?!Problem: ).)*?)\s*$", re.S)  # pot prompt
_NUMS = re.compile(r"-?\d+")


class ScriptedBackend:
    name = "scripted"

    def __init__(self, model: str = "scripted", *, correct_every: int = 2, calls: list | None = None,
                 ramble_every: int = 0, **_: object):
        self.model = model
        self.correct_every = correct_every  # sample is correct when seed % correct_every == 0
        self.calls = calls if calls is not None else []
        # ramble_every > 0: a sample with seed % ramble_every == 1 goes on to invent a new problem
        # (with a different boxed answer), as the real model does, so tests can see the stop cut.
        self.ramble_every = ramble_every

    def _answer(self, question: str, seed: int) -> int:
        nums = [int(x) for x in _NUMS.findall(question)]
        if "Solve for x" in question:
            a, b, c = nums[:3]
            ans = (c - b) // a
        elif "-" in question or "gave away" in question or "left" in question:
            ans = nums[0] - sum(nums[1:])
        elif "times" in question or "boxes" in question:
            ans = nums[0] * nums[1]
        else:
            ans = sum(nums)
        if seed % self.correct_every:
            ans += 1 + seed % 3
        return ans

    def _solve(self, question: str, seed: int) -> str:
        ans = self._answer(question, seed)
        if seed % 7 == 3:
            return f"I think about {question[:20]} but I am not sure."  # no final answer
        return f"We compute step by step. The result is {ans}. The answer is \\boxed{{{ans}}}."

    def _program(self, question: str, seed: int) -> str:
        """A pot path: a program printing the (right or wrong) answer; some crash, some are prose."""
        ans = self._answer(question, seed)
        if seed % 7 == 3:
            return f"The answer is {ans}."  # no program
        if seed % 5 == 4:
            return "```python\nprint(int('x'))\n```"  # runtime error
        return f"```python\nresult = {ans}\nprint(result)\n```"

    @staticmethod
    def _beads(a: int, b: int) -> str:
        return f" Kim has {a} red beads and {b} blue beads. How many beads does Kim have?\n"

    def _pose(self, msgs: Messages, seed: int) -> str:
        """The posing calls (selfplay/prompts.py): a question, a program first, the question of a
        program, a program for a question (the gold's and the witness's: every 6th seed is off
        by one, so golds_disagree happens)."""
        ask, shown = msgs[0]["content"], msgs[-1]["content"]
        a, b = 2 + seed % 50, 3 + (seed // 50) % 40
        if ask.startswith("Write a new short Python program"):
            return f"print({a} + {b})\n```\n"
        if ask.startswith("Write the math word problem"):
            x, y = [int(v) for v in _NUMS.findall(shown.rsplit("```python", 1)[-1])][:2]
            return self._beads(x, y)
        if ask.startswith("Write a short Python program"):
            x, y = [int(v) for v in _NUMS.findall(shown.rsplit("Problem:", 1)[-1])][:2]
            return f"print({x} + {y}{' + 1' if seed % 6 == 5 else ''})\n```\n"
        return self._beads(a, b)

    def generate(self, prompts: Sequence[Messages], params: SamplingParams,
                 seeds: Sequence[Sequence[int]]) -> list[list[Completion]]:
        self.calls.append(len(prompts))
        # Tests that kill a run mid-stage slow generation down so the kill lands inside it.
        time.sleep(float(os.environ.get("SELFPLAY_SCRIPTED_DELAY", "0")))
        out = []
        for msgs, row in zip(prompts, seeds):
            text = msgs[-1]["content"]
            m = _Q.search(text)
            pot = _POT_Q.search(text)
            comps = []
            for j in range(params.n):
                s = int(row[j]) if j < len(row) else j
                body = (self._solve(m.group(1), s) if m else self._program(pot.group(1), s) if pot
                        else self._pose(msgs, s))
                if m and self.ramble_every and s % self.ramble_every == 1:
                    body += "\n\nProblem: What is 1 + 1?\nSolution: 1 + 1 = 2. The answer is \\boxed{2}."
                n_tokens = len(body.split())  # tokens generated, the stop string's included
                comps.append(Completion(text=cut_at_stop(body, params.stop), finish_reason="stop",
                                        n_tokens=n_tokens, seed=s,
                                        logprob_mean=-0.5 if params.with_logprobs else None))
            out.append(comps)
        return out

    def close(self) -> None:
        if os.environ.get("SELFPLAY_SCRIPTED_DELAY"):  # tests that stop a run check the unwind
            print("[scripted] backend closed", file=sys.stderr, flush=True)
