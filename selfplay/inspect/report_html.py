"""OUT/report.html: the run report as one self-contained page. It needs no server and no network:
it opens from a file:// URL, offline, in any current browser.

It holds the sections of report.md (the same Section list, so the same numbers), the plots as
base64 PNG data URIs, and three browsers:
- pairs: every pair of OUT/round_K/pairs.jsonl, filtered by round, origin, mode, the rejected
  path's verdict reason and a text search (question, problem id, gold, either path), chosen and
  rejected side by side with their extracted answers and the gold, the rejected path's first false
  statement highlighted (`first_error`) and the step-check counts;
- posed problems (origin "posed" in problems.jsonl): program, witnesses (second program, stated
  expression, solver majority), solve rate, and the pairs each gave (a click shows them);
- dropped paths and problems by filter and reason (counts from filters.json), with examples: the
  first paths (or problems) in rollouts.jsonl that the run's own filter code, run again with the
  run's settings, drops for that reason.

Plain HTML and JavaScript (selfplay.inspect.report_page), no library: the page must work offline
from a file (a library would have to be fetched from a CDN, which offline cannot, or inlined and
kept up to date), and code nobody fetches or bundles is no supply chain to audit.

Size: the browsers' data is one JSON document (texts de-duplicated, records as arrays), gzip-compressed
and base64-encoded in the page; the script decodes it with the browser's DecompressionStream and
draws 50 rows a page. On a synthetic run of 100,000 pairs (tests/inspect/test_report_html.py) the
page is 4.9 MB, against 23.5 MB with the same data as plain JSON (the paths repeat a lot), and both
open in headless Chromium in 0.5-0.8 s: the smaller file wins (it is mailed, attached to issues and
kept beside the run), at no cost in opening time. docs/report.md has the numbers.
"""
from __future__ import annotations

import base64
import dataclasses
import gzip
import html
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from selfplay import __version__
from selfplay.config import FiltersConfig, PairConfig
from selfplay.core.io import atomic_write_bytes
from selfplay.core.metrics import pass_counts, pass_rate
from selfplay.core.records import Problem, Rollout
from selfplay.inspect.report_page import CSS, JS
from selfplay.inspect.report_tables import NOT_DROPS, Section, reason_meaning
from selfplay.pair.filters import (
    completion_hygiene,
    majority_pseudo_labels,
    needs_label,
    perplexity_filter,
    solve_rate_band,
)
from selfplay.pair.process import path_flaw
from selfplay.pair.pseudo import majority_witnessed, uses_majority_witness
from selfplay_verifiers import answer_key
from selfplay_verifiers.steps import check_steps

EXAMPLES = 3  # examples per filter and reason
SCAN = 2000  # paths of a round read again for examples, at most (the counts come from filters.json)
EXAMPLE_CHARS = 1500


class _Enum:
    """Distinct values to small integers (the data's columns refer to them)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}

    def __call__(self, value: Any) -> int:
        key = "-" if value is None else str(value)
        if key not in self.index:
            self.index[key] = len(self.names)
            self.names.append(key)
        return self.index[key]


def _jsonl(path: Path, problems: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of a JSONL file; unreadable lines (a torn tail) are skipped and counted."""
    if not path.exists():
        return []
    out, bad = [], 0
    try:
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = orjson.loads(line)
                except orjson.JSONDecodeError:
                    bad += 1
                    continue
                if isinstance(d, dict):
                    out.append((n, d))
                else:
                    bad += 1
    except OSError as e:
        problems.append(f"{path}: {e}")
        return []
    if bad:
        problems.append(f"{path}: {bad} unreadable line(s) skipped")
    return out


def _records(rows: list[tuple[int, dict[str, Any]]], cls: Any, path: Path, problems: list[str]) -> list[Any]:
    out = []
    for n, d in rows:
        try:
            out.append(cls.from_dict(d))
        except (ValueError, TypeError) as e:
            problems.append(f"{path}:{n}: {e}")
    return out


def _section_cfg(cls: Any, raw: Any) -> Any:
    raw = raw if isinstance(raw, dict) else {}
    return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})


def _u16(text: str, i: int) -> int:
    """A code-point offset as a JavaScript (UTF-16) string offset."""
    return i if text.isascii() else i + sum(1 for ch in text[:i] if ord(ch) > 0xFFFF)


def _content(messages: Any) -> str:
    return str(messages[-1].get("content", "")) if isinstance(messages, list) and messages and \
        isinstance(messages[-1], dict) else ""


class _Round:
    """One round's files, read once: problems, rollouts by problem, pairs."""

    def __init__(self, d: Path, problems: list[str]) -> None:
        self.problems = {p.id: p for p in _records(_jsonl(d / "problems.jsonl", problems), Problem,
                                                   d / "problems.jsonl", problems)}
        self.rollouts = _records(_jsonl(d / "rollouts.jsonl", problems), Rollout, d / "rollouts.jsonl", problems)
        self.by_pid: dict[str, list[Rollout]] = defaultdict(list)
        for r in self.rollouts:
            self.by_pid[r.problem_id].append(r)
        self.reason = {(r.problem_id, r.sample_index): r.reason for r in self.rollouts}
        self.pairs = _jsonl(d / "pairs.jsonl", problems)


def collect(run: dict[str, Any]) -> tuple[dict[str, Any], dict[int, list[dict[str, Any]]]]:
    """The browsers' data (one JSON document) and, per round, the dropped-path rows with examples.
    Files that cannot be read are added to run["problems"]."""
    cfg = run.get("config") or {}
    fc, pc = _section_cfg(FiltersConfig, cfg.get("filters")), _section_cfg(PairConfig, cfg.get("pair"))
    witness = str((cfg.get("pose") or {}).get("witness", "auto"))
    origin, mode, reason = _Enum(), _Enum(), _Enum()
    texts: dict[str, int] = {}
    problems: list[list[Any]] = []
    pindex: dict[tuple[int, str], int] = {}
    pairs, posed, drops = [], [], {}

    def text_id(t: str) -> int:
        return texts.setdefault(t, len(texts))

    def problem_id(k: int, pid: str, md: dict[str, Any], rd: _Round) -> int:
        if (k, pid) not in pindex:
            p = rd.problems.get(pid)
            rate = md.get("pass_rate") if "pass_rate" in md else pass_rate(r.label for r in rd.by_pid.get(pid, []))
            pindex[(k, pid)] = len(problems)
            problems.append([k, pid, origin(md.get("origin") or (p.origin if p else None)),
                             md.get("level", p.level if p else None), md.get("question") or (p.question if p else ""),
                             str(md.get("gold", p.answer if p else "")),
                             round(rate, 3) if isinstance(rate, float) else rate])
        return pindex[(k, pid)]

    for r in run["rounds"]:
        k, rd = r["k"], _Round(r["dir"], run["problems"])
        n_pairs: dict[str, int] = defaultdict(int)
        mw: dict[str, dict[str, Any]] = {}
        for line, d in rd.pairs:
            md = d.get("metadata") or {}
            pid = str(md.get("problem_id"))
            n_pairs[pid] += 1
            if isinstance(md.get("majority_witness"), dict):
                mw[pid] = md["majority_witness"]
            rejected = _content(d.get("rejected"))
            fe = md.get("first_error")
            if isinstance(fe, dict) and isinstance(fe.get("start"), int) and isinstance(fe.get("end"), int):
                fe = [_u16(rejected, fe["start"]), _u16(rejected, fe["end"]), str(fe.get("statement")),
                      str(fe.get("left")), str(fe.get("right"))]
            else:
                fe = None
            sc = md.get("step_check")
            sc = [(sc.get(side) or {}).get(v, 0) for side in ("chosen", "rejected")
                  for v in ("true", "false", "unknown")] if isinstance(sc, dict) else None
            pairs.append([problem_id(k, pid, md, rd), mode(md.get("mode", "cot")),
                          reason(rd.reason.get((pid, md.get("rejected_index")))), text_id(_content(d.get("chosen"))),
                          text_id(rejected), md.get("chosen_extracted"), md.get("rejected_extracted"), fe, sc,
                          int(md.get("granularity") == "step"), line])
        dropped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)  # posed problems, by filter
        for p in rd.problems.values():
            if p.origin == "posed":
                row, key = _posed_row(p, rd, fc, pc, witness, n_pairs.get(p.id, 0), mw.get(p.id),
                                      problem_id(k, p.id, {"origin": p.origin, "level": p.meta.get("level")}, rd))
                posed.append(row)
                if key is not None and len(dropped[key]) < EXAMPLES:
                    dropped[key].append({"id": p.id, "question": p.question, "gold": p.answer,
                                         "verdict": f"{row[6]} labelled paths correct; solver majority {row[8]}"})
        drops[k] = _drops(r, rd, fc, pc, dropped)
    data = {"v": 1, "texts": list(texts), "enums": {"origin": origin.names, "mode": mode.names, "reason": reason.names},
            "problems": problems, "pairs": pairs, "posed": posed}
    return data, drops


def _vote(p: Problem, rs: list[Rollout], agreement: float) -> tuple[str | None, str]:
    """The solver majority of a problem's answers (the vote of selfplay.pair.pseudo): (answer,
    "answer (share of votes)") or (None, why there is none)."""
    res = majority_pseudo_labels([p], rs, agreement, only_without_gold=False)
    if res.kept:
        m = res.kept[0].meta
        return str(m["majority_answer"]), f"{m['majority_answer']} ({m['agreement']:.0%} of {m['votes']} answers)"
    return None, "no majority: " + next((k for k, v in res.dropped.items() if v), "-")


def _posed_row(p: Problem, rd: _Round, fc: FiltersConfig, pc: PairConfig, witness: str, n: int,
               recorded: dict[str, Any] | None, pi: int) -> tuple[list[Any], tuple[str, str] | None]:
    """A posed problem's row of the browser, and the filter and reason that dropped it (or None)."""
    rs = rd.by_pid.get(p.id, [])
    c, labelled = pass_counts(r.label for r in rs)
    ws: list[list[Any]] = []
    w, ew = p.meta.get("witness"), p.meta.get("expression_witness")
    if isinstance(w, dict):
        ws.append([f"second program -> {w.get('answer')}", w.get("agree")])
    if isinstance(ew, dict):
        ws.append([f"stated expression {ew.get('expression')} = {ew.get('value')}", ew.get("agree")])
    only = majority_witnessed(witness)
    needed = uses_majority_witness(witness) and not needs_label(p) and (only is None or only(p))
    agree, vote = True, "- (not required by pose.witness)"
    if needed:  # the vote the run took, or the same vote taken again (its answer compared by answer key)
        answer, vote = _vote(p, rs, pc.pseudo_agreement)
        agree = bool(recorded.get("agree")) if recorded else \
            (answer is not None and answer_key(answer) == answer_key(p.answer))
        ws.append([f"solver majority {vote}", agree])
    key = None if n else _fate(p, rs, fc, needed, agree)
    fate = f"gave {n} pair(s)" if n else f"no pairs: {key[0]} {key[1]}" if key else \
        "no pairs: no clean correct path beside an incorrect one after the path filters"
    if key == ("majority_witness", "golds_disagree"):
        fate += " (majority and gold compared by answer key)"
    return [pi, p.program, p.meta.get("kind", "-"), p.meta.get("level", "-"), p.meta.get("steps", "-"), ws,
            f"{c}/{labelled}" + (f" ({c / labelled:.0%})" if labelled else ""), n, vote, fate], key


def _fate(p: Problem, rs: list[Rollout], fc: FiltersConfig, needed: bool, agree: bool) -> tuple[str, str] | None:
    """The filter and reason that dropped a posed problem: the majority witness runs first, then
    the solve-rate band (selfplay.pair.pseudo, then selfplay.pair.curate)."""
    if needed and not agree:
        return "majority_witness", "golds_disagree"
    if fc.enabled and fc.solve_band:
        band = next((k for k, v in solve_rate_band([p], rs, fc.band_low, fc.band_high).dropped.items() if v), None)
        if band:
            return "solve_band", band
    return None


def _path_drop(r: Rollout, gold: str, fc: FiltersConfig, pc: PairConfig, active: set[str]) -> tuple[str, str] | None:
    """Which filter drops path r, and why, in the order selfplay.pair.curate applies them; only the
    `active` filters run (those filters.json counts drops for: the others dropped nothing)."""
    if fc.enabled and fc.hygiene and "hygiene" in active:
        why = next((a for a, b in completion_hygiene([r], max_chars=fc.max_chars).dropped.items() if b), None)
        if why:
            return "hygiene", why
    if fc.enabled and fc.perplexity and "perplexity" in active:
        why = next((a for a, b in perplexity_filter([r], fc.min_logprob, fc.max_logprob).dropped.items() if b), None)
        if why:
            return "perplexity", why
    if pc.clean_chosen and r.mode == "cot" and r.label == "correct" and "steps" in active:
        flaw = path_flaw(r, gold, check_steps(r.completion), require_boxed=pc.require_boxed)
        if flaw:
            return "steps", flaw
    return None


def _drops(r: dict[str, Any], rd: _Round, fc: FiltersConfig, pc: PairConfig,
           problems: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per filter and reason with a count in filters.json: the count and up to EXAMPLES examples
    (paths read again from rollouts.jsonl; posed problems from `problems`)."""
    filters = (r["stats"] or {}).get("filters") or {}
    want = {(name, a): int(b) for name, c in filters.items() if isinstance(c, dict) and not name.endswith(("_info",
            "_precision")) for a, b in c.items() if isinstance(b, int) and b and a not in NOT_DROPS.get(name, ())}
    found: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list, problems)
    active = {f for f, _ in want if f in ("hygiene", "perplexity", "steps")}
    for x in rd.rollouts[:SCAN] if active else []:
        if all(len(found[key]) >= EXAMPLES for key in want if key[0] in active):
            break
        p = rd.problems.get(x.problem_id)
        key = _path_drop(x, p.answer if p else "", fc, pc, active)
        if key in want and len(found[key]) < EXAMPLES:
            cut = "..." if len(x.completion) > EXAMPLE_CHARS else ""
            found[key].append({"id": x.problem_id, "question": p.question if p else "", "gold": p.answer if p else "",
                               "verdict": f"{x.label} ({x.reason})", "extracted": x.extracted,
                               "text": x.completion[:EXAMPLE_CHARS] + cut})
    return [{"filter": f, "reason": a, "count": n, "meaning": reason_meaning(f, a), "examples": found.get((f, a), [])}
            for (f, a), n in want.items()]


# ---------------------------------------------------------------- the page

_SPLIT_CODE = re.compile(r"(`[^`]+`)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])")
_NUM = re.compile(r"^[-+]?\d[\d.,/ ]*%?( \[[-+\d., ]+\])?$")


def inline(text: str) -> str:
    """Markdown's `code`, **bold** and *em* as HTML; everything else escaped."""
    out = []
    for part in _SPLIT_CODE.split(text):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            out.append(_EM.sub(r"<em>\1</em>", _BOLD.sub(r"<strong>\1</strong>", html.escape(part))))
    return "".join(out)


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{inline(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{inline(c)}</td>' if _NUM.match(c) else f"<td>{inline(c)}</td>"
                                    for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def section_html(s: Section) -> str:
    parts = [f'<section id="{s.key}" data-section="{s.key}">']
    if s.title:
        parts.append(f"<h2>{inline(s.title)}</h2>")
    parts += [f'<p class="{"headline" if s.key == "headline" else ""}">{inline(t)}</p>' for t in s.text]
    if s.header:
        parts.append(_table(s.header, s.rows, "report-table"))
    if s.bullets:
        parts.append("<ul>" + "".join(f"<li>{inline(b)}</li>" for b in s.bullets) + "</ul>")
    parts += [f"<p>{inline(t)}</p>" for t in s.notes]
    return "\n".join(parts + ["</section>"])


def _drops_html(drops: dict[int, list[dict[str, Any]]]) -> str:
    parts = ['<section id="dropped" data-section="dropped"><h2>Dropped paths and problems, with examples</h2>',
             "<p>Per round, filter and reason: the count from filters.json and examples: the first paths (or "
             f"problems) of the round that the run's own filter code, run again with the run's settings, drops for "
             f"that reason (at most {EXAMPLES}, from the first {SCAN} paths).</p>"]
    if not any(drops.values()):
        parts.append("<p>No filter dropped anything in this run.</p>")
    for k, rows in drops.items():
        if not rows:
            continue
        parts.append(f'<h3>Round {k}</h3><table class="drops" data-round="{k}"><thead><tr><th>filter</th>'
                     "<th>reason</th><th>meaning</th><th>dropped</th><th>examples</th></tr></thead><tbody>")
        for d in rows:
            ex = "".join(
                f'<details class="example"><summary><code>{html.escape(e["id"])}</code> {html.escape(e["question"])} '
                f'(gold <code>{html.escape(e["gold"])}</code>; {html.escape(e["verdict"])}'
                + ("" if e.get("extracted") is None else f'; extracted <code>{html.escape(str(e["extracted"]))}</code>')
                + ")</summary>" + (f'<pre>{html.escape(e["text"])}</pre>' if "text" in e else "") + "</details>"
                for e in d["examples"]) or '<span class="meta">no example found in the paths read</span>'
            parts.append(f'<tr><td>{d["filter"]}</td><td><code>{html.escape(d["reason"])}</code></td>'
                         f'<td>{inline(d["meaning"])}</td><td class="num">{d["count"]}</td><td>{ex}</td></tr>')
        parts.append("</tbody></table>")
    return "\n".join(parts + ["</section>"])


BROWSERS = """
<section id="pairs" data-section="pairs"><h2>Pair browser</h2>
<p>Every preference pair of the run (OUT/round_K/pairs.jsonl): the prompt's question and gold, the chosen path
(verified correct, step-checked) beside the rejected one (incorrect), each with the answer the verifier extracted.
In the rejected path the first false arithmetic statement is highlighted when the step checker found one
(<code>first_error</code>). "rejected:" is the rejected path's verdict reason.</p>
<div id="pair-browser" class="browser">
<div class="controls">
<label>round <select id="pf-round"></select></label>
<label>origin <select id="pf-origin" data-all="all origins"></select></label>
<label>mode <select id="pf-mode" data-all="all modes"></select></label>
<label>rejected verdict reason <select id="pf-reason" data-all="all reasons"></select></label>
<label>search <input id="pf-q" type="search" placeholder="question, problem id, gold or path text"></label>
</div>
<div class="pager"><button class="prev">&laquo; previous</button><button class="next">next &raquo;</button>
<span class="count"></span></div>
<div class="rows"></div>
</div></section>
<section id="posed-problems" data-section="posed-problems"><h2>Posed-problem browser</h2>
<p>Every problem the model posed (origin "posed" in problems.jsonl), with its program (its output is the gold),
the witnesses of that gold (a second program written from the question alone, the value of an expression the
question states, and the solver majority where <code>pose.witness</code> requires it; green agrees, red does
not), the share of its labelled paths that were correct, and the pairs it gave.</p>
<div id="posed-browser" class="browser">
<div class="controls">
<label>round <select id="qf-round"></select></label>
<label>gave pairs <select id="qf-gave"><option value="">all</option><option value="yes">yes</option>
<option value="no">no</option></select></label>
<label>search <input id="qf-q" type="search" placeholder="question, problem id or program"></label>
</div>
<div class="pager"><button class="prev">&laquo; previous</button><button class="next">next &raquo;</button>
<span class="count"></span></div>
<table class="posed"><thead><tr><th>round</th><th>problem</th><th>question</th><th>program</th><th>gold</th>
<th>witnesses</th><th>solved</th><th>solver majority</th><th>pairs</th></tr></thead><tbody class="rows"></tbody></table>
</div></section>
"""


NAV = {"rounds": "Rounds", "training": "Training sets", "modes": "Modes", "heldout": "Held-out", "gain": "Gain",
       "posed": "Posing", "filters": "Filters", "pseudo": "Majority vote", "steps": "Step check",
       "diversity": "Diversity", "warnings": "Warnings", "untrained": "Untrained", "unread": "Unread files"}


def render(out_dir: Path, run: dict[str, Any], sections: list[Section], plots: list[tuple[str, str]],
           data: dict[str, Any], drops: dict[int, list[dict[str, Any]]], *, compress: bool = True) -> str:
    raw = orjson.dumps(data)
    if compress:
        payload, encoding = base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode(), "gzip+base64"
    else:  # "<" never appears outside a JSON string: escaped, no "</script>" can end the block
        payload, encoding = raw.decode().replace("<", "\\u003c"), "json"
    body = [section_html(s) for s in sections]
    if plots:
        imgs = "".join(f'<figure><img class="plot" alt="{html.escape(t)}" src="data:image/png;base64,'
                       f'{base64.b64encode((out_dir / f).read_bytes()).decode()}"><figcaption>{html.escape(t)}'
                       "</figcaption></figure>" for f, t in plots)
        body.append(f'<section id="plots" data-section="plots"><h2>Plots</h2>{imgs}</section>')
    body += [BROWSERS, _drops_html(drops)]
    if run["problems"]:
        body.append(section_html(Section("unread", "Files that could not be read", bullets=list(run["problems"]))))
    nav = [(s.key, NAV.get(s.key, s.title)) for s in sections if s.title] + [("plots", "Plots")] * bool(plots) + [
        ("pairs", f"Pairs ({len(data['pairs'])})"), ("posed-problems", f"Posed problems ({len(data['posed'])})"),
        ("dropped", "Dropped paths")]
    title = f"Self-play run report: {out_dir}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        "<nav>" + "".join(f'<a href="#{k}">{html.escape(t)}</a>' for k, t in nav) + "</nav>",
        f"<header><h1>{html.escape(title)}</h1><p class=\"meta\">selfplay {__version__}; report.md has the same "
        'tables. <span id="load-status">Loading the pair and posed-problem browsers...</span></p></header>',
        "<main>", *body, "</main>",
        f'<script type="application/octet-stream" id="selfplay-data" data-encoding="{encoding}">{payload}</script>',
        f"<script>{JS}</script>", "</body></html>"])


def write_html(out_dir: Path, run: dict[str, Any], sections: list[Section], plots: list[tuple[str, str]],
               data: dict[str, Any], drops: dict[int, list[dict[str, Any]]], *, compress: bool = True) -> Path:
    path = Path(out_dir) / "report.html"
    atomic_write_bytes(path, render(Path(out_dir), run, sections, plots, data, drops, compress=compress).encode())
    return path
