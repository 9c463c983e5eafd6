"""scripts/compare_runs.py: whole runs side by side, paired per seed, pooled over seeds."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from selfplay.core import io

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)


def _set(right: int, n: int = 10, prefix: str = "p") -> dict:
    return {"problems": [{"id": f"{prefix}{i}", "greedy": {"label": "correct" if i < right else "incorrect"}}
                         for i in range(n)]}


def _run(path: Path, seed: int, start: dict[str, int], after: dict[str, int], heldout_prefix: str = "p") -> Path:
    io.write_json(path / "config.json", {"run": {"seed": seed}})
    sets = lambda d: {k: _set(v, prefix=heldout_prefix if k == "heldout_procedural" else "p")  # noqa: E731
                      for k, v in d.items()}
    io.write_json(path / "eval_base.json", {"sets": sets(start)})
    io.write_json(path / "round_1" / "eval.json", {"sets": sets(after)})
    (path / "round_0").mkdir()  # a round without eval.json is skipped
    return path


def _rows(capsys) -> dict[tuple[str, str], list[str]]:
    lines = capsys.readouterr().out.strip().splitlines()[2:]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return {(c[0], c[2]): c for c in cells}


def test_gains_against_the_start_and_the_same_seeds_base_pooled_over_seeds(tmp_path, capsys):
    start = {"heldout_procedural": 2, "ood_arith": 1, "ood_word": 0, "svamp": 0}
    b0 = _run(tmp_path / "b0", 0, start, {"heldout_procedural": 6, "ood_arith": 3, "ood_word": 2, "svamp": 0})
    b1 = _run(tmp_path / "b1", 1, start, {"heldout_procedural": 6, "ood_arith": 3, "ood_word": 2, "svamp": 0})
    v0 = _run(tmp_path / "v0", 0, start, {"heldout_procedural": 5, "ood_arith": 3, "ood_word": 6, "svamp": 1},
              heldout_prefix="other")  # its own generators: another in-distribution split
    v1 = _run(tmp_path / "v1", 1, start, {"heldout_procedural": 6, "ood_arith": 3, "ood_word": 4, "svamp": 0})
    compare_runs.main(["--against", str(b0), str(b1), "--variant", f"v={v0},{v1}", "--variant", f"v0={v0}"])
    rows = _rows(capsys)
    word = rows[("v", "ood_word")]
    assert word[1] == "0,1" and word[3] == "50.0%"  # (6 + 4) of 20
    assert word[4].startswith("+50.0 [") and word[5].startswith("+30.0 [")  # vs start 0/20; vs base 4/20
    pooled = rows[("v0", "OOD pooled")]
    assert pooled[3] == "33.3%" and pooled[4].startswith("+30.0 [") and pooled[5].startswith("+16.7 [")
    assert rows[("v0", "heldout_procedural")][5] == "(no shared problems)"  # never across different problems
    assert rows[("v", "heldout_procedural")][5].endswith("(the 10 shared problems)")  # v1's, not v0's
    assert "shared" not in word[5]
    # each seed's gain against its base as one replicate: v's ood_word +40 (seed 0), +20 (seed 1)
    assert word[6].startswith("+30.0 [") and word[6].endswith("0 below, 2 above (+40.0, +20.0)")
    assert "sign-flip p = 0.5" in word[6]  # 2 of the 4 sign patterns reach |mean| 30
    assert rows[("v0", "ood_word")][6] == ""  # one seed: no spread to measure


def test_a_run_without_evaluation_is_refused_by_name(tmp_path):
    (tmp_path / "r").mkdir()
    io.write_json(tmp_path / "r" / "config.json", {"run": {"seed": 0}})
    with pytest.raises(SystemExit, match="r: no eval_base.json or no evaluated round"):
        compare_runs.main(["--variant", f"x={tmp_path / 'r'}"])


def _ood_run(path: Path, seed: int, right: dict[str, set[str]], answers: dict[str, str] | None = None) -> Path:
    """A run whose eval sets are ood_arith / ood_word as `seed` draws them (30 problems each), with
    the problems of the forms in `right[set]` answered correctly (start and after alike)."""
    from selfplay_seeds.ood import ood_problems

    sets = {}
    for name in ("ood_arith", "ood_word"):
        sets[name] = {"problems": [{"id": p.id, "answer": (answers or {}).get(p.id, p.answer),
                                    "greedy": {"label": "correct" if p.meta["form"] in right[name] else "incorrect"}}
                                   for p in ood_problems(name, 30, seed=seed)]}
    io.write_json(path / "config.json", {"run": {"seed": seed}})
    io.write_json(path / "eval_base.json", {"sets": sets})
    io.write_json(path / "round_1" / "eval.json", {"sets": sets})
    return path


def test_forms_split_the_generated_sets_by_template_worst_first(tmp_path, capsys):
    from selfplay_seeds.ood import ood_problems

    b0 = _ood_run(tmp_path / "b0", 0, {"ood_arith": {"increase by", "plus"}, "ood_word": {"baker in all"}})
    b1 = _ood_run(tmp_path / "b1", 1, {"ood_arith": {"increase by", "plus"}, "ood_word": {"baker in all"}})
    v0 = _ood_run(tmp_path / "v0", 0, {"ood_arith": {"plus", "take away"}, "ood_word": {"baker in all"}})
    v1 = _ood_run(tmp_path / "v1", 1, {"ood_arith": {"plus", "take away"}, "ood_word": {"baker in all"}})
    compare_runs.main(["--forms", "--against", str(b0), str(b1), "--variant", f"v={v0},{v1}"])
    out = capsys.readouterr().out
    table = out[out.index("| variant | set | form |"):].strip().splitlines()[2:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    arith = [r for r in rows if r[1] == "ood_arith"]
    n_increase = sum(p.meta["form"] == "increase by" for s in (0, 1) for p in ood_problems("ood_arith", 30, seed=s))
    assert arith[0][2] == "increase by" and arith[0][3] == str(n_increase)  # the loss first
    assert arith[0][4:6] == ["100.0%", "0.0%"] and arith[0][6].startswith("-100.0 [")
    assert arith[0][7] == "2 below, 0 above"
    assert arith[-1][2] == "take away" and arith[-1][6].startswith("+100.0 [")
    plus = next(r for r in arith if r[2] == "plus")
    assert plus[4:7] == ["100.0%", "100.0%", "+0.0 [+0.0, +0.0], p = 1"]
    assert {r[2] for r in rows if r[1] == "ood_word"} <= {"baker in all", "birds flew away", "pages two days",
                                                           "students absent", "stamps more needed",
                                                           "marbles more than", "jars put broke",
                                                           "dollars saved spent", "cars three colours",
                                                           "train got off"}
    assert sum(int(r[3]) for r in rows) == 2 * 2 * 30  # every problem of both seeds in one form


def test_forms_refuse_a_set_drawn_by_other_code(tmp_path):
    b = _ood_run(tmp_path / "b", 0, {"ood_arith": set(), "ood_word": set()})
    v = _ood_run(tmp_path / "v", 0, {"ood_arith": set(), "ood_word": set()}, answers={"ood_word-0003": "-1"})
    with pytest.raises(SystemExit, match=r"v: ood_word problem ood_word-0003 \(seed 0\) is not the one"):
        compare_runs.main(["--forms", "--against", str(b), "--variant", f"x={v}"])
    with pytest.raises(SystemExit, match="--forms compares with base runs: give --against"):
        compare_runs.main(["--forms", "--variant", f"x={v}"])
