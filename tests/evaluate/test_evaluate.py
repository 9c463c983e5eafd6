import re
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from selfplay.backends.scripted import ScriptedBackend
from selfplay.core.records import Problem
from selfplay.evaluate.driver import eval_seed, evaluate, format_table, load_eval_file, run_eval_cli, write_eval
from selfplay.pair.contamination import ContaminationError, check_contamination, normalize_text
from selfplay.prompts import solve_messages
from selfplay_verifiers import MathVerifier, answer_key, check
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass(frozen=True)
class Verdict:  # the fields evaluate() reads from selfplay_verifiers.Verdict
    label: str
    reason: str
    extracted: str | None = None


class FakeVerifier:
    """Tests only: last \\boxed{} vs gold by normalized string (the real one is selfplay_verifiers.MathVerifier)."""

    def __init__(self, *a, **k):
        self.calls = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def submit(self, gold, text, extract=True):  # the call the generate-and-label loop makes
        fut = Future()
        fut.set_result(next(iter(self.verify_many([(gold, text)]))))
        return fut

    def verify_many(self, items):
        self.calls += 1
        for gold, text in items:
            m = _BOXED.findall(text)
            if not m:
                yield Verdict("unknown", "no_answer", None)
            else:
                ok = answer_key(m[-1]) == answer_key(gold)
                yield Verdict("correct" if ok else "incorrect", "ok" if ok else "wrong", m[-1])


def _problems(n=5):
    return [Problem(id=f"t-{i}", question=f"What is {i} + {i + 2}?", answer=str(2 * i + 2), origin="procedural",
                    source="test") for i in range(n)]


def test_evaluate_metrics_records_and_determinism():
    probs = _problems(5)
    backend = ScriptedBackend()
    r = evaluate(backend, probs, FakeVerifier(), samples=4, batch_size=2, seed=7, keep_completions=True,
                 progress=False)
    assert backend.calls == [2, 2, 2, 2, 1, 1]  # greedy + sampled call per batch of <= 2 problems
    assert r["n"] == 5 and r["k"] == 4 and len(r["problems"]) == 5
    for p, rec in zip(probs, r["problems"]):
        assert rec["id"] == p.id and len(rec["samples"]) == 4
        assert [s["seed"] for s in rec["samples"]] == [eval_seed(7, p.id, j) for j in range(4)]
        for s in rec["samples"] + [rec["greedy"]]:  # verdicts were matched to the right completion
            m = _BOXED.findall(s["completion"])
            expect = "unknown" if not m else ("correct" if m[-1] == p.answer else "incorrect")
            assert s["label"] == expect
        assert rec["c"] == sum(s["label"] == "correct" for s in rec["samples"])
    greedy_ok = sum(rec["greedy"]["label"] == "correct" for rec in r["problems"])
    assert r["pass@1"] == greedy_ok / 5
    assert r["pass@1_ci"][0] <= r["pass@1"] <= r["pass@1_ci"][1]
    again = evaluate(ScriptedBackend(), probs, FakeVerifier(), samples=4, batch_size=3, seed=7,
                     keep_completions=True, progress=False)
    assert again["problems"] == r["problems"]  # batch size does not change any result
    other = evaluate(ScriptedBackend(), probs, FakeVerifier(), samples=4, seed=8, progress=False)
    assert [s["seed"] for s in other["problems"][0]["samples"]] != [s["seed"] for s in r["problems"][0]["samples"]]


def test_evaluate_greedy_only_and_bad_args():
    backend = ScriptedBackend()
    r = evaluate(backend, _problems(3), FakeVerifier(), samples=1, progress=False)
    assert backend.calls == [3] and r["maj@k"] is None and r["pass@1"] is not None
    with pytest.raises(ValueError, match="samples"):
        evaluate(backend, _problems(3), FakeVerifier(), samples=0)
    dup = _problems(2) + _problems(1)
    with pytest.raises(ValueError, match="unique"):
        evaluate(backend, dup, FakeVerifier(), samples=1)


def test_seed_is_stable_not_python_hash():
    assert eval_seed(0, "gsm8k_test-1", 3) == eval_seed(0, "gsm8k_test-1", 3)
    assert eval_seed(0, "gsm8k_test-1", 3) != eval_seed(0, "gsm8k_test-1", 4)
    assert eval_seed(0, "gsm8k_test-1", 3) != eval_seed(1, "gsm8k_test-1", 3)
    # same value in a fresh interpreter (Python's hash() of a str is salted per process)
    import subprocess
    import sys
    code = "from selfplay.evaluate.driver import eval_seed; print(eval_seed(0, 'gsm8k_test-1', 3))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=Path(__file__).resolve().parents[2])
    assert int(other.stdout) == eval_seed(0, "gsm8k_test-1", 3)


@pytest.mark.skipif(not DATA.exists(), reason="shared data not present")
def test_load_real_eval_files():
    g = load_eval_file(DATA / "gsm8k_test.jsonl")
    assert len(g) == 1319 and g[0].answer == "18" and g[0].id == "gsm8k_test-0" and g[0].meta["format"] == "gsm8k"
    assert all("####" not in p.answer and p.answer for p in g)
    s = load_eval_file(DATA / "svamp_test.jsonl")
    assert len(s) == 1000 and s[0].answer == "145"
    assert "93 groups. How big is each group of bananas?" in s[0].question
    m = load_eval_file(DATA / "mawps_test.jsonl")
    assert len(m) == 2065 and m[0].answer == "43" and m[0].question.startswith("Joan found 70 seashells")


def _write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_load_eval_file_formats_and_errors(tmp_path):
    p = _write(tmp_path, "mix.jsonl", ['{"question": "Q1?", "answer": "x\\n#### 1,234"}', "",
                                       '{"question": "Q2?", "answer": 2.50, "id": "own"}',
                                       '{"Body": "A has 3", "Question": "How many?", "Answer": 3.0}',
                                       '{"input": "B?", "target": 4}'])
    probs = load_eval_file(p)
    assert [x.answer for x in probs] == ["1234", "2.5", "3", "4"]
    assert [x.id for x in probs] == ["mix-0", "own", "mix-2", "mix-3"]
    assert probs[2].question == "A has 3. How many?"
    bad = _write(tmp_path, "bad.jsonl", ['{"question": "Q", "answer": "1"}', '{"question": "Q"}'])
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: missing field 'answer'"):
        load_eval_file(bad)
    badj = _write(tmp_path, "badj.jsonl", ['{"question": "Q", "answer": "1"}', "{oops"])
    with pytest.raises(ValueError, match=r"badj\.jsonl:2: invalid JSON"):
        load_eval_file(badj)
    badsv = _write(tmp_path, "sv.jsonl", ['{"Body": "x", "Question": "", "Answer": 1}'])
    with pytest.raises(ValueError, match=r"sv\.jsonl:1: field 'Question'"):
        load_eval_file(badsv)
    nogold = _write(tmp_path, "ng.jsonl", ['{"question": "Q", "answer": "work\\n####  "}'])
    with pytest.raises(ValueError, match=r"ng\.jsonl:1: field 'answer'"):
        load_eval_file(nogold)


def test_write_eval_atomic(tmp_path):
    out = tmp_path / "sub" / "eval.json"
    write_eval({"model": "m", "sets": {"a": {"pass@1": 0.5}}}, out)
    assert orjson.loads(out.read_bytes())["sets"]["a"]["pass@1"] == 0.5
    assert [f.name for f in out.parent.iterdir()] == ["eval.json"]


def test_run_eval_cli_with_scripted_backend(tmp_path, monkeypatch, capsys):
    from selfplay.backends import resources
    from selfplay.config import from_dict

    monkeypatch.setattr(resources, "MathVerifier", FakeVerifier)
    data = _write(tmp_path, "adds.jsonl", [orjson.dumps({"question": p.question, "answer": p.answer}).decode()
                                           for p in _problems(6)])
    out = tmp_path / "eval.json"
    cfg = from_dict({"model": {"backend": "scripted"}, "eval": {"samples": 4, "max_new_tokens": 32},
                     "run": {"seed": 1}})
    res = run_eval_cli(cfg, "scripted-model", [str(data)], out=out, limit=4)
    assert res["sets"]["adds"]["n"] == 4
    assert orjson.loads(out.read_bytes())["sets"]["adds"]["k"] == 4
    printed = capsys.readouterr().out
    assert "adds" in printed and "pass@1" in printed
    assert format_table(res).splitlines()[1].startswith("adds")


# ---------------------------------------------------------------- contamination

def _pair(question, pid="train-1"):
    return {"prompt": solve_messages(question), "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}], "metadata": {"problem_id": pid}}


def test_contamination_detects_crafted_leak(tmp_path):
    held = [Problem(id="h-1", question="Janet's ducks lay 16 eggs per day. She eats three for breakfast.",
                    answer="18", origin="file", source="x"),
            Problem(id="h-2", question="What is 2 + 2?", answer="4", origin="file", source="x")]
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"".join(orjson.dumps(_pair(q)) + b"\n" for q in [
        "Tom has 5 apples. How many?", "What is 2 + 3?",
        "Janet's ducks lay 16 eggs per day.",  # only a prefix of a held-out question: not a copy
    ]))
    r = check_contamination(held, [clean])
    assert r["clean"] and r["pairs"] == 3 and r["text_leaks"] == 0
    leak = tmp_path / "leak.jsonl"
    # case, punctuation, whitespace and line breaks changed: still the same question
    leak.write_bytes(orjson.dumps(_pair("JANET'S  ducks lay 16 eggs\nper day -- she eats three for breakfast!"))
                     + b"\n" + orjson.dumps(_pair("Unrelated question 1?", pid="h-2")) + b"\n")
    r = check_contamination(held, [clean, leak])
    assert not r["clean"] and r["text_leaks"] == 1 and r["id_leaks"] == 1
    assert r["leaked_heldout_ids"] == ["h-1", "h-2"]
    assert r["examples"][0]["file"] == str(leak) and r["examples"][0]["line"] == 1
    with pytest.raises(ContaminationError):
        check_contamination(held, [leak], strict=True)
    assert normalize_text("A,  b\nC!") == "a b c"


def test_evaluate_with_real_math_verifier():
    probs = _problems(4)
    with MathVerifier(workers=1) as v:
        r = evaluate(ScriptedBackend(), probs, v, samples=3, keep_completions=True, progress=False)
    for p, rec in zip(probs, r["problems"]):
        for s in rec["samples"] + [rec["greedy"]]:
            assert s["label"] == check(p.answer, s["completion"]).label
    assert r["n"] == 4 and r["k"] == 3


def test_contamination_keeps_operators_apart(tmp_path):
    """'What is 7 - 4?' must not count as a copy of the held-out 'What is 7 + 4?'."""
    from selfplay.core.io import write_jsonl
    from selfplay.core.records import Problem
    from selfplay.pair.contamination import check_contamination, normalize_text
    from selfplay.prompts import solve_messages

    assert normalize_text("What is 7 - 4?") != normalize_text("What is 7 + 4?")
    held = [Problem(id="h1", question="What is 7 + 4?", answer="11", origin="procedural", source="add")]
    f = tmp_path / "pairs.jsonl"
    pair = {"prompt": solve_messages("What is 7 - 4?"), "chosen": [], "rejected": [], "metadata": {"problem_id": "t"}}
    write_jsonl(f, [pair])
    assert check_contamination(held, [f])["clean"] is True
    pair["prompt"] = solve_messages("What  is 7+4 ?")
    write_jsonl(f, [pair])
    assert check_contamination(held, [f])["clean"] is False


def test_run_eval_cli_extra_sets_exclude_and_compare(tmp_path, monkeypatch, capsys):
    from selfplay.backends import resources
    from selfplay.config import from_dict
    from selfplay.core import io
    from selfplay.evaluate.driver import format_gains

    monkeypatch.setattr(resources, "MathVerifier", FakeVerifier)
    probs = _problems(6)
    seen = tmp_path / "problems.jsonl"  # a run's problems file holding two of them
    io.write_jsonl(seen, [probs[1].to_dict(), probs[4].to_dict()])
    cfg = from_dict({"model": {"backend": "scripted"}, "eval": {"samples": 2, "max_new_tokens": 32},
                     "run": {"seed": 1}})
    res = run_eval_cli(cfg, "scripted-model", [], out=None, limit=None, extra_sets={"heldout_procedural": probs},
                       exclude=[seen])
    s = res["sets"]["heldout_procedural"]
    assert s["n"] == 4 and {p["id"] for p in s["problems"]} == {probs[i].id for i in (0, 2, 3, 5)}
    assert "excluded 2 of 6" in capsys.readouterr().err
    before = {"sets": {"heldout_procedural": {"problems": [
        {"id": p["id"], "greedy": {"label": "incorrect"}} for p in s["problems"]]}}}
    table = format_gains(before, res).splitlines()
    right = sum(p["greedy"]["label"] == "correct" for p in s["problems"])
    assert table[1].split()[:2] == ["heldout_procedural", "4"] and f"{right}/0" in table[1]
    assert "nothing to compare" in format_gains({"sets": {}}, res)


def test_sets_of_one_setting_run_together_and_split_back_the_same(monkeypatch):
    """evaluate_model sends the sets of one sampling setting in one submission; every set's record
    equals evaluating that set alone, and each set gets its own setting (ood sets: ood_samples)."""
    from selfplay.backends import resources
    from selfplay.backends.resources import build_backend
    from selfplay.config import from_dict
    from selfplay.evaluate.driver import evaluate, evaluate_model

    monkeypatch.setattr(resources, "MathVerifier", FakeVerifier)
    cfg = from_dict({"model": {"backend": "scripted"}, "eval": {"samples": 3, "ood_samples": 1, "max_new_tokens": 32},
                     "run": {"seed": 2}})
    probs = _problems(9)
    sets = {"mine": probs[:3], "ood_word": probs[3:6], "svamp": probs[6:]}
    res = evaluate_model(cfg, "scripted-model", sets)
    assert list(res["sets"]) == ["mine", "ood_word", "svamp"]
    assert res["sets"]["mine"]["kind"] == "out-of-distribution" and res["sets"]["mine"]["k"] == 3
    assert res["sets"]["ood_word"]["params"]["samples"] == 1 and res["sets"]["svamp"]["n"] == 3
    backend = build_backend(cfg, "scripted-model")
    for name, problems in sets.items():
        alone = evaluate(backend, problems, FakeVerifier(), samples=res["sets"][name]["params"]["samples"],
                         temperature=cfg.solve.temperature, top_p=cfg.solve.top_p, max_new_tokens=32, seed=2,
                         progress=False)
        assert alone["problems"] == res["sets"][name]["problems"]
        assert alone["pass@1"] == res["sets"][name]["pass@1"]
