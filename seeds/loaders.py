"""Load seed or evaluation problems from JSONL files and HF datasets.

Formats recognised per line: GSM8K ({"question", "answer": "... #### 18"}), generic
({"question", "answer"}), SVAMP ({"Body", "Question", "Answer"}) and MAWPS ({"input", "target"}).
A bad line raises ValueError naming file:line and the field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable


from selfplay.records import Problem


def _num(x: Any) -> str:
    """18.0 -> "18"; keeps non-integral values as written."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    s = str(x).strip()
    if s.endswith(".0") and s[:-2].lstrip("-").isdigit():
        return s[:-2]
    return s


def record_to_qa(d: dict[str, Any]) -> tuple[str, str]:
    """(question, gold answer) from one record of any supported format; KeyError names the field."""
    if "question" in d and "answer" in d:
        ans = d["answer"]
        if isinstance(ans, str) and "####" in ans:  # GSM8K: reasoning, then "#### 1,800"
            ans = ans.rsplit("####", 1)[1].strip().replace(",", "")
        return str(d["question"]), _num(ans)
    if "Body" in d and "Question" in d:
        return f"{str(d['Body']).strip()} {str(d['Question']).strip()}", _num(d["Answer"])
    if "input" in d and "target" in d:
        return str(d["input"]), _num(d["target"])
    if "problem" in d and ("solution" in d or "answer" in d):
        return str(d["problem"]), str(d.get("answer") or d["solution"])
    raise KeyError("question/answer")


def load_jsonl_problems(path: str | Path, *, limit: int | None = None) -> list[Problem]:
    """Problems from a GSM8K / SVAMP / MAWPS / question-answer JSONL file (origin "file").

    One parser serves seeds, the loop's held-out files and `selfplay eval`:
    `selfplay.evaluate.load_eval_file` (a bad line raises ValueError naming file:line:field)."""
    from selfplay.evaluate import load_eval_file

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: file not found")
    problems = load_eval_file(path)
    return problems[:limit] if limit is not None else problems


def load_hf_dataset(name: str, *, split: str = "train", config: str | None = None,
                    limit: int | None = None) -> list[Problem]:
    """Problems from a HF `datasets` name (e.g. "openai/gsm8k", config "main"). Needs the hub or a
    local cache; offline it fails with datasets' own error, wrapped in one line."""
    try:
        import datasets
    except ImportError as e:
        raise RuntimeError("HF dataset seeds need datasets: pip install -e '.[train]'") from e
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # offline, missing, private: one line, the cause kept
        raise RuntimeError(f"seeds: cannot load HF dataset {name!r} ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    return problems_from_records(ds, source=name, limit=limit)


def problems_from_records(records: Iterable[dict[str, Any]], *, source: str, limit: int | None = None) -> list[Problem]:
    out = []
    for i, d in enumerate(records):
        try:
            q, a = record_to_qa(dict(d))
        except KeyError as e:
            raise ValueError(f"{source}[{i}]: missing field {e.args[0]!r}") from None
        out.append(Problem(id=f"{source.replace('/', '_')}-{i}", question=q, answer=a, origin="hf", source=source))
        if limit is not None and len(out) >= limit:
            break
    return out
