"""`python -m selfplay_verifiers`: math batches (order, malformed lines, atomic output) and run-code."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import selfplay_verifiers

ROOT = Path(selfplay_verifiers.__file__).resolve().parent.parent


def _run(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfplay_verifiers", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


LINES = [
    json.dumps({"id": 1, "gold": "18", "pred": "So the answer is 18.", "keep": [1, 2]}),
    json.dumps({"id": 2, "gold": "x^2-1", "pred": "\\boxed{(x-1)(x+1)}"}),
    "{not json",
    json.dumps({"id": 4, "gold": 18, "pred": "18"}),
    json.dumps({"id": 5, "pred": "18"}),
    json.dumps([1, 2]),
    "",
    json.dumps({"id": 8, "gold": "\\frac{1}{3}", "pred": "0.333"}),
    json.dumps({"id": 9, "gold": "5", "pred": "I give up, there are many numbers 1 2 3 here"}),
    json.dumps({"id": 10, "gold": 0.5, "pred": "\\boxed{\\frac{1}{2}}"}),
    json.dumps({"id": 11, "gold": True, "pred": "1"}),
]


def test_math_batch_keeps_order_fields_and_reports_bad_lines(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(LINES) + "\n")
    out = tmp_path / "out.jsonl"
    res = _run("math", str(src), "-o", str(out), "--workers", "1", "--timeout", "5")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 10  # the blank line is skipped, every other line is written
    got = [(r.get("id", r.get("line")), r["verdict"], r["reason"]) for r in rows]
    assert got == [(1, "correct", "ok"), (2, "correct", "ok"), (3, "unknown", "parse_error"),
                   (4, "correct", "ok"), (5, "unknown", "parse_error"),
                   (6, "unknown", "parse_error"), (8, "incorrect", "wrong"),
                   (9, "incorrect", "no_answer"), (10, "correct", "ok"),
                   (11, "unknown", "parse_error")]
    assert rows[3]["gold"] == 18 and rows[8]["gold"] == 0.5  # numbers checked as text, kept as given
    assert rows[0]["keep"] == [1, 2] and rows[0]["extracted"] == "18"
    assert isinstance(rows[1]["seconds"], float)
    assert rows[2] == {"line": 3, "raw": "{not json", "verdict": "unknown",
                       "reason": "parse_error", "extracted": None, "seconds": 0.0}
    for n in (3, 5, 6, 11):
        assert f"{src}:{n}: " in res.stderr
    assert f"{src}:11: field 'gold' must be a string, got bool" in res.stderr
    assert f"{src}:4:" not in res.stderr and f"{src}:8:" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temp left


def test_math_defaults_to_stdout_and_reads_stdin() -> None:
    res = _run("math", "-", "-q", stdin=LINES[0] + "\n" + LINES[7] + "\n")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["verdict"] for r in rows] == ["correct", "incorrect"]


def test_math_empty_input_warns_and_exits_0(tmp_path: Path) -> None:
    src = tmp_path / "empty.jsonl"
    src.write_text("\n  \n")
    out = tmp_path / "out.jsonl"
    res = _run("math", str(src), "-o", str(out), "-q")
    assert (res.returncode, out.read_text()) == (0, "")
    assert res.stderr.strip().splitlines() == [f"{src}: no records"]


def test_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    res = _run("math", str(tmp_path / "nope.jsonl"))
    assert res.returncode == 2 and "nope.jsonl" in res.stderr


def test_steps_batch_judges_each_text_and_reports_bad_lines(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "2 + 6 = 7. Then 2 + 6 = 8.", "id": 1}\n'
                   "not json\n"
                   '{"text": 5}\n'
                   '{"body": "3 plus 4 is 7"}\n')
    out = tmp_path / "out.jsonl"
    res = _run("steps", str(src), "-o", str(out))
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and rows[0]["id"] == 1
    assert [s["verdict"] for s in rows[0]["steps"]] == ["false", "true"]
    assert rows[0]["first_false"]["text"] == "2 + 6 = 7" and rows[0]["counts"] == {"true": 1, "false": 1, "unknown": 0}
    assert rows[1]["steps"] is None and rows[2]["steps"] is None and rows[3]["steps"] is None
    assert f"{src}:2: invalid JSON" in res.stderr and f"{src}:3: field 'text' must be a string" in res.stderr
    assert "verifiers steps: 4 lines, 2 statements: true=1, false=1, unknown=0" in res.stderr
    res = _run("steps", str(src), "--field", "body")
    assert res.returncode == 0 and json.loads(res.stdout.splitlines()[3])["counts"]["true"] == 1


def test_help_lists_both_commands() -> None:
    res = _run("--help")
    assert res.returncode == 0
    assert "math IN.jsonl" in res.stdout and "run-code FILE.py" in res.stdout and "steps IN.jsonl" in res.stdout
    sub = _run("math", "--help")
    assert all(opt in sub.stdout for opt in ("-o OUT.jsonl", "--workers", "--timeout"))
    sub = _run("run-code", "--help")
    assert all(opt in sub.stdout for opt in ("--gold", "--timeout", "--unisolated-UNSAFE",
                                             "--library NAME", "--no-libraries", "FILE.py ...",
                                             "syntax_error", "no_output"))
    assert "0 every program correct; 1 at least one incorrect; 3 at least one unknown" in \
        " ".join(sub.stdout.split())


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_run_code_sandbox_with_gold(tmp_path: Path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text("print('working...')\nprint(6 * 3)\n")
    res = _run("run-code", str(prog), "--gold", "18")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:2] == ["working...", "18"]
    last = json.loads(lines[-1])
    assert (last["verdict"], last["reason"], last["extracted"]) == ("correct", "ok", "18")
    wrong = _run("run-code", str(prog), "--gold", "19")
    assert json.loads(wrong.stdout.splitlines()[-1])["verdict"] == "incorrect"


def test_run_code_sandbox_missing_bwrap_is_one_line_exit_2(tmp_path: Path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text("print(1)\n")
    env = dict(os.environ, PATH=str(tmp_path))  # no bwrap on this PATH
    res = _run("run-code", str(prog), env=env)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "bubblewrap" in res.stderr
    assert res.stdout == ""


def test_math_output_that_is_a_directory_is_one_line_and_leaves_no_temp(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(LINES[0] + "\n")
    outdir = tmp_path / "out"
    outdir.mkdir()
    res = _run("math", str(src), "-o", str(outdir), "--workers", "1", "-q")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"error: cannot write {outdir}: is a directory; give a file name"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out"]  # no .tmp-* left behind
