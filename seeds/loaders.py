"""Load seed or held-out problems from JSONL files and HF datasets: one parser for seeds, the
loop's held-out files and `selfplay eval` (selfplay.evaluate.driver.load_eval_file is this loader).

Formats recognised per record: GSM8K ({"question", "answer": "... #### 18"}), generic
({"question", "answer"}, an own "id" is kept), SVAMP ({"Body", "Question", "Answer"}), MAWPS
({"input", "target"}) and MATH-style ({"problem", "answer"}). A bad line raises one ValueError
naming file:line and the field.

Layering: seeds/ sits below the pipeline. It imports only the leaf record type
(selfplay.core.records) and the JSONL reader (selfplay.core.io), which import nothing of the project, never a
pipeline stage; and the standalone verifiers' thousands-separator rule (verifiers.normalize.strip_thousands).
"""
from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from selfplay.core.io import iter_jsonl
from selfplay.core.records import Problem
from verifiers.normalize import strip_thousands


def _number(x: Any) -> str:
    """1.0 -> "1", 2.50 -> "2.5"; strings pass through with thousands separators removed
    ("1,800" -> "1800", verifiers.normalize.strip_thousands; a list "2, 3" keeps its commas)."""
    if isinstance(x, bool):
        raise ValueError("boolean is not a number")
    if isinstance(x, (int, float)):
        d = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
        return format(d.normalize(), "f") if d != 0 else "0"
    s = strip_thousands(str(x).strip())
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", s):  # Decimal, not float: big integers stay exact
        d = Decimal(s)
        return format(d.normalize(), "f") if d != 0 else "0"
    return s


def parse_record(d: dict[str, Any], where: str) -> tuple[str, str, str, dict[str, Any]]:
    """-> (question, answer, format, meta); raises ValueError "<where>: ..." naming the field."""
    def field(name: str, kind: type | tuple[type, ...] = str) -> Any:
        if name not in d or d[name] is None:
            raise ValueError(f"{where}: missing field {name!r}")
        v = d[name]
        if isinstance(v, bool) or not isinstance(v, kind) or (isinstance(v, str) and not v.strip()):
            raise ValueError(f"{where}: field {name!r} must be a non-empty {getattr(kind, '__name__', kind)}")
        return v

    if "Body" in d or "Question" in d:  # SVAMP
        body, q = field("Body").strip(), field("Question").strip()
        if body[-1] not in ".?!":
            body += "."
        ans = field("Answer", (int, float, str))
        meta = {k: d[k] for k in ("ID", "Type", "Equation") if k in d}
        return f"{body} {q}", _number(ans), "svamp", meta
    if "input" in d or "target" in d:  # MAWPS
        return field("input").strip(), _number(field("target", (int, float, str))), "mawps", {
            k: d[k] for k in ("type", "idx") if k in d}
    if "problem" in d and "question" not in d:  # MATH-style: a bare final answer is required
        return field("problem").strip(), _number(field("answer", (int, float, str))), "math", {}
    question = field("question").strip()
    answer = field("answer", (int, float, str))
    if isinstance(answer, str) and "####" in answer:  # GSM8K: the final answer follows "####"
        final = answer.rsplit("####", 1)[1].strip()
        if not final:
            raise ValueError(f"{where}: field 'answer' has nothing after '####'")
        return question, _number(final), "gsm8k", {}
    return question, _number(answer), "generic", {}


def load_jsonl_problems(path: str | Path, *, limit: int | None = None, unlabelled: bool = False) -> list[Problem]:
    """Problems (origin "file") from a GSM8K / SVAMP / MAWPS / MATH / question-answer JSONL file.

    unlabelled=True (seed files): a {"question"} line with no "answer" is a problem without a
    trusted gold (answer "", meta gold_trusted false); the round labels it by majority vote of
    its sampled paths (selfplay.pair.pseudo). Evaluation files always need their answers.

    ids are "<file stem>-<record index>" (a generic record's own "id" is kept); meta records the
    format and line. `limit` keeps the first n problems. A missing file, invalid JSON, a non-object
    line, a missing or empty field or a duplicate id raises ValueError naming file:line.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    out: list[Problem] = []
    seen: set[str] = set()
    for lineno, d in iter_jsonl(path, numbered=True):  # bad JSON / not an object: file:line
        if limit is not None and len(out) >= limit:
            break
        where = f"{path}:{lineno}"
        if unlabelled and d.get("answer") is None and isinstance(d.get("question"), str) \
                and d["question"].strip() and not {"Body", "Question", "input", "problem"} & set(d):
            question, answer, fmt, meta = d["question"].strip(), "", "generic", {"gold_trusted": False}
        else:
            question, answer, fmt, meta = parse_record(d, where)
        pid = str(d["id"]) if fmt == "generic" and d.get("id") is not None else f"{path.stem}-{len(out)}"
        if pid in seen:
            raise ValueError(f"{where}: field 'id': duplicate id {pid!r}")
        seen.add(pid)
        out.append(Problem(id=pid, question=question, answer=answer, origin="file", source=path.name,
                           meta={"format": fmt, "line": lineno, **meta}))
    return out


def parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """"name[:config[:split]]" -> (name, config or None, split, default "train").

    The name is a hub id ("openai/gsm8k") or a local path; config and split are plain names."""
    parts = spec.split(":")
    name = parts[0].strip()
    ok = (1 <= len(parts) <= 3 and re.fullmatch(r"[\w.\-/]+", name) is not None
          and all(re.fullmatch(r"[\w.\-]*", p) for p in parts[1:]))
    if not ok:
        raise ValueError(f"{spec!r} is not name[:config[:split]] (e.g. 'openai/gsm8k:main:train')")
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    return name, config, split


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
    except Exception as e:  # offline, missing, private: one line, the cause chained (never swallowed)
        first = str(e).splitlines()[0] if str(e) else ""
        raise RuntimeError(f"seeds: cannot load HF dataset {name!r} ({type(e).__name__}: {first})") from e
    return problems_from_records(ds, source=name, limit=limit)


def problems_from_records(records: Iterable[dict[str, Any]], *, source: str,
                          limit: int | None = None) -> list[Problem]:
    """Problems (origin "hf") from dataset rows, parsed like file lines; errors name source[row]."""
    out = []
    for i, d in enumerate(records):
        if limit is not None and len(out) >= limit:
            break
        q, a, fmt, meta = parse_record(dict(d), f"{source}[{i}]")
        out.append(Problem(id=f"{source.replace('/', '_')}-{i}", question=q, answer=a, origin="hf",
                           source=source, meta={"format": fmt, "row": i, **meta}))
    return out
