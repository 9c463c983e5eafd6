"""Load seed or held-out problems from JSONL files and HF datasets: one parser for seeds, the
loop's held-out files and `selfplay eval` (selfplay.evaluate.driver.load_eval_file is this loader).

Formats recognised per record: GSM8K ({"question", "answer": "... #### 18"}), generic
({"question", "answer"}, an own "id" is kept), SVAMP ({"Body", "Question", "Answer"}), MAWPS
({"input", "target"}) and MATH-style ({"problem", "answer"}). A bad line raises one ValueError
naming file:line and the field. A line with no question field, or with an answer-like field
(`answer_like`: "solution", "label", "gold", "final_answer", ...) in place of its format's answer
field, is refused with the fields it has ("no question: found fields [...]" / "no gold answer:
found fields [...]"); only a seed line with a question and no answer-like field at all loads
without a gold (unlabelled=True, pseudo-labelled by the round).

Layering: seeds/ sits below the pipeline. It imports only the leaf record type
(selfplay.core.records) and the JSONL reader (selfplay.core.io), which import nothing of the project, never a
pipeline stage; and the standalone verifiers' thousands-separator rule (selfplay_verifiers.normalize.strip_thousands).
"""
from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from selfplay.core.io import iter_jsonl
from selfplay.core.records import Problem
from selfplay_verifiers.normalize import strip_thousands


DATA = Path(__file__).resolve().parent / "data"
# Seed files shipped in seeds/data, each with its licence (data/LICENSE-*.md): config names them
# by these names (seeds.files = ["gsm8k_train"]).
SHIPPED = {"gsm8k_train": DATA / "gsm8k_train.jsonl"}


def seed_file(name: str | Path) -> Path:
    """A seed file as the config names it: a path, or the name of a shipped file (SHIPPED) when no
    such path exists."""
    path = Path(name)
    return SHIPPED[str(name)] if not path.exists() and str(name) in SHIPPED else path


def solution_steps(solution: str) -> int:
    """A GSM8K worked solution's steps: its non-empty lines before "####" (each line is one
    calculation: 2 to 9 in GSM8K's train split)."""
    return sum(1 for line in solution.rsplit("####", 1)[0].splitlines() if line.strip())


def easy_first_levels(problems: list[Problem]) -> list[Problem]:
    """The problems with `level` set by how many steps their worked solution takes, ranked per
    source: level 1 is the fewest steps that source has (GSM8K: 2), level 2 the next, and so on.
    The seed curriculum then starts every file at seeds.levels and widens it like a generator,
    when the model solves its top level often enough. A problem without worked steps (not GSM8K
    format) is refused, naming its file and line."""
    for p in problems:
        if not isinstance(p.meta.get("steps"), int):
            raise ValueError(f"{p.source}:{p.meta.get('line')}: seeds.file_order = easy_first needs GSM8K worked "
                             f"solutions ('... <<48/2=24>>24 ... #### 72'); this line is {p.meta.get('format')}")
    ranks: dict[str, dict[int, int]] = {}
    for src in {p.source for p in problems}:
        counts = sorted({p.meta["steps"] for p in problems if p.source == src})
        ranks[src] = {n: i + 1 for i, n in enumerate(counts)}
    return [dataclasses.replace(p, level=ranks[p.source][p.meta["steps"]]) for p in problems]


def _number(x: Any) -> str:
    """1.0 -> "1", 2.50 -> "2.5"; strings pass through with thousands separators removed
    ("1,800" -> "1800", selfplay_verifiers.normalize.strip_thousands; a list "2, 3" keeps its commas)."""
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


# Field names (split into words at "_", "-", digits and camelCase) that hold a gold answer in some
# dataset. A line whose format field for the gold is absent but that has such a field is refused:
# it is never pseudo-labelled or read as unlabelled, so an answer under an unknown name is not lost.
ANSWER_WORDS = frozenset({"answer", "answers", "ans", "solution", "solutions", "sol", "label", "labels", "gold",
                          "target", "targets", "result", "results", "output", "outputs", "truth", "gt", "expected",
                          "final", "correct", "rationale", "response"})
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
QUESTION_FIELDS = "'question', 'problem' (MATH-style), 'Body' + 'Question' (SVAMP), 'input' (MAWPS)"
ANSWER_FIELDS = "'answer' (with 'question' or 'problem'), 'Answer' (SVAMP), 'target' (MAWPS, with 'input')"


def answer_like(name: str) -> bool:
    """True for a field name that looks like a gold answer: "solution", "final_answer", "goldLabel"."""
    return any(w.lower() in ANSWER_WORDS for w in _WORDS.findall(name))


def parse_record(d: dict[str, Any], where: str, *, unlabelled: bool = False) -> tuple[str, str, str, dict[str, Any]]:
    """-> (question, answer, format, meta); raises ValueError "<where>: ..." naming the field.

    A field whose value is null counts as absent. The format is the first that matches: SVAMP
    ("Body" or "Question"), MAWPS ("input"), MATH-style ("problem" without "question"), else
    question-answer (GSM8K when the answer holds "####"). A line with none of those question
    fields is refused ("no question: found fields [...]"). When the format's answer field is
    absent: a line with an answer-like field (`answer_like`) is refused ("no gold answer: found
    fields [...]"); with unlabelled=True a question line with no answer-like field at all is
    returned with answer "" and meta gold_trusted false (labelled later by majority vote);
    otherwise "missing field '<answer field>'"."""
    found = [k for k, v in d.items() if v is not None]

    def field(name: str, kind: type | tuple[type, ...] = str) -> Any:
        if d.get(name) is None:
            raise ValueError(f"{where}: missing field {name!r}")
        v = d[name]
        if isinstance(v, bool) or not isinstance(v, kind) or (isinstance(v, str) and not v.strip()):
            raise ValueError(f"{where}: field {name!r} must be a non-empty {getattr(kind, '__name__', kind)}")
        return v

    def gold(name: str, seed: bool = False) -> str:
        """The format's answer field as a canonical string; refused (one line) when it is absent."""
        if d.get(name) is not None:
            return _number(field(name, (int, float, str)))
        odd = [k for k in found if answer_like(k)]
        if odd:
            hint = f", or no answer-like field (here {odd}) for a majority-vote label" if seed else ""
            raise ValueError(f"{where}: no gold answer: found fields {found}; expected one of {ANSWER_FIELDS}{hint}")
        raise ValueError(f"{where}: missing field {name!r}")

    if d.get("Body") is not None or d.get("Question") is not None:  # SVAMP
        body, q = field("Body").strip(), field("Question").strip()
        if body[-1] not in ".?!":
            body += "."
        meta = {k: d[k] for k in ("ID", "Type", "Equation") if k in d}
        return f"{body} {q}", gold("Answer"), "svamp", meta
    if d.get("input") is not None:  # MAWPS
        return field("input").strip(), gold("target"), "mawps", {k: d[k] for k in ("type", "idx") if k in d}
    if d.get("problem") is not None and d.get("question") is None:  # MATH-style: a bare final answer is required
        return field("problem").strip(), gold("answer"), "math", {}
    if d.get("question") is None:
        raise ValueError(f"{where}: no question: found fields {found}; expected one of {QUESTION_FIELDS}")
    question = field("question").strip()
    raw = d.get("answer")
    if isinstance(raw, str) and "####" in raw:  # GSM8K: the final answer follows "####"
        final = raw.rsplit("####", 1)[1].strip()
        if not final:
            raise ValueError(f"{where}: field 'answer' has nothing after '####'")
        return question, _number(final), "gsm8k", {"steps": solution_steps(raw)}
    if unlabelled and raw is None and not any(map(answer_like, found)):
        return question, "", "generic", {"gold_trusted": False}  # no gold at all: the round's majority vote labels it
    return question, gold("answer", seed=unlabelled), "generic", {}


def load_jsonl_problems(path: str | Path, *, limit: int | None = None, unlabelled: bool = False) -> list[Problem]:
    """Problems (origin "file") from a GSM8K / SVAMP / MAWPS / MATH / question-answer JSONL file.

    unlabelled=True (seed files): a {"question"[, "id"]} line with no "answer" and no other
    answer-like field (`answer_like`: "solution", "label", "gold", "final_answer", ...) is a problem
    without a trusted gold (answer "", meta gold_trusted false); the round labels it by majority
    vote of its sampled paths (selfplay.pair.pseudo). A line with an answer-like field but not its
    format's answer field is refused, never pseudo-labelled. Evaluation files always need their
    answers.

    ids are "<file stem>-<record index>" (a generic record's own "id" is kept); meta records the
    format and line. `limit` keeps the first n problems. A missing file, invalid JSON, a non-object
    line, a line with no question or no gold answer, a missing or empty field or a duplicate id
    raises ValueError naming file:line (parse_record).
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
        question, answer, fmt, meta = parse_record(d, where, unlabelled=unlabelled)
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
