"""`selfplay status OUT`: which stages of each round are done, what is in progress, the counts so
far and an ETA, read from the files a run leaves (its markers), never from the processes, plus
OUT/run.log for the run's state and its rates. The run's state is that of its own last command
(`run` or a stage command); side commands (export, verify) are listed apart with how each last
went, so a failed export never makes a finished run look stopped.

A stage is done when its output file exists (outputs are written atomically, last). A stage is in
progress when it has begun: its provenance entry is written before it starts (selfplay.core.provenance),
and solving appends to rollouts.jsonl as it goes. Counts are the records in the files: problems =
lines of problems.jsonl, samples = lines of rollouts.jsonl, solved problems = problems with all
their samples there, pairs = lines of pairs.jsonl. Nothing is written.
"""
from __future__ import annotations

import os
import re
import shlex
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from selfplay.core import fmt, io
from selfplay.core import log as runlog
from selfplay.core.evalsets import set_kind
from selfplay.run.layout import eval_enabled, round_complete
from selfplay.run.summary import kind_headline

STAGES = ("problems", "solve", "pair", "train", "eval")
DONE, RUNNING, PENDING, OFF = "done", "in progress", "pending", "off"


def _records(path: Path) -> list[dict[str, Any]]:
    """Complete JSONL records (a torn last line, from a crash mid-write, is not one)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().split(b"\n"):
        if line.strip():
            try:
                d = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(d, dict):
                out.append(d)
    return out


# the commands that do the run's own work; any other (export, verify) is a side command, whose
# outcome is listed apart and never taken for the run's state
RUN_COMMANDS = frozenset({"run", "problems", "solve", "pair", "stats", "train"})


@dataclass(frozen=True)
class Session:
    """One command's lines in run.log: from its START to its END (same pid), if it wrote one."""

    start: int  # index of its START event
    pid: int
    command: str  # as logged: "run", "export --to DIR", "solve --round 0", ...
    end: runlog.Event | None
    error: str | None  # its last ERROR line before END

    @property
    def name(self) -> str:
        return self.command.split(" ", 1)[0]


def sessions(events: list[runlog.Event]) -> list[Session]:
    """Every command session in the log, in the order they started (several may overlap: a side
    command run while the run is going)."""
    out = []
    for i, e in enumerate(events):
        if not e.msg.startswith("START "):
            continue
        end, err = None, None
        for f in events[i + 1:]:
            if f.pid != e.pid:
                continue
            if f.msg.startswith("START "):  # the pid began another session: this one never ended
                break
            if f.msg.startswith("END "):
                end = f
                break
            if f.level == "ERROR":
                err = f.msg
        out.append(Session(i, e.pid, e.msg[6:].split(" (selfplay", 1)[0], end, err))
    return out


def _state(s: Session, events: list[runlog.Event]) -> dict[str, Any]:
    since = events[s.start].time.isoformat()
    if s.end is not None:
        how = (f"`{s.command}` ended with an error: {s.error}" if s.error
               else f"`{s.command}` ended: {s.end.msg[4:]}")
        return {"state": "finished" if s.end.msg.startswith("END ok") else "stopped", "pid": s.pid,
                "how": how, "since": since}
    alive = _alive(s.pid)
    return {"state": "running" if alive else "stopped", "pid": s.pid, "since": since,
            "how": f"`{s.command}`" + ("" if alive else f" (pid {s.pid}) stopped without an END line: killed")}


def _run_state(events: list[runlog.Event], found: list[Session]) -> dict[str, Any]:
    """The state of the run's own work: its last run or stage command."""
    own = [s for s in found if s.name in RUN_COMMANDS]
    if not own:
        return {"state": "no log", "pid": None}
    return _state(own[-1], events)


def _side_commands(events: list[runlog.Event], found: list[Session]) -> dict[str, dict[str, Any]]:
    """The last session of each side command (export, verify): how it went."""
    last = {s.name: s for s in found if s.name not in RUN_COMMANDS}
    out = {}
    for name, s in sorted(last.items(), key=lambda kv: kv[1].start):
        st = _state(s, events)
        outcome = ("running" if st["state"] == "running" else "ok" if st["state"] == "finished"
                   else "interrupted" if s.end is not None and s.end.msg.startswith("END interrupted")
                   else "failed" if s.end is not None else "killed")
        out[name] = {"command": s.command, "outcome": outcome, "error": s.error, "pid": s.pid, "since": st["since"]}
    return out


def _alive(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return b"selfplay" in cmd or b"python" in cmd  # a reused pid would run something else


def _run_session(events: list[runlog.Event], found: list[Session]) -> list[runlog.Event]:
    """The log from the run's last own session on (its rates and progress lines)."""
    own = [s for s in found if s.name in RUN_COMMANDS]
    return events[own[-1].start:] if own else []


def resume_command(out: Path) -> str:
    """`selfplay run --out OUT` typed in the current directory: OUT relative to it when under it,
    else absolute (shell-quoted)."""
    full = Path(os.path.abspath(out))
    try:
        where = str(full.relative_to(Path.cwd()))
    except ValueError:
        where = str(full)
    return f"selfplay run --out {shlex.quote(where)}"


def _stage(done: bool, begun: bool) -> str:
    return DONE if done else RUNNING if begun else PENDING


def _solve_rate(out: Path, k: int, n_now: int, session: list[runlog.Event]) -> float | None:
    """Samples/s: this session's own progress on round K when it made any (from its `round K:
    starting` line: time and lines at that moment), else the last earlier round's measured rate."""
    d = out / f"round_{k}"
    pat = re.compile(rf"^round {k}: starting .*rollouts\.jsonl has (\d+) lines")
    begin = [(e.time.timestamp(), int(m.group(1))) for e in session if (m := pat.match(e.msg))]
    if begin and (d / "rollouts.jsonl").exists():
        t0, n0 = begin[-1]
        if (d / "problems.jsonl").exists():
            t0 = max(t0, (d / "problems.jsonl").stat().st_mtime)  # posing came first
        dt = (d / "rollouts.jsonl").stat().st_mtime - t0
        if n_now > n0 and dt > 0:
            return (n_now - n0) / dt
    for j in range(k - 1, -1, -1):
        stats = io.read_json_or_none(out / f"round_{j}" / "stats.json") or {}
        rate = (stats.get("timing") or {}).get("samples_per_s")
        if isinstance(rate, (int, float)) and rate > 0:
            return float(rate)
    return None


def _train_eta(out: Path, k: int, cfg: dict[str, Any], session: list[runlog.Event],
               running: bool) -> tuple[str, float | None]:
    begun = [i for i, e in enumerate(session) if e.msg.startswith(f"round {k}: training")]
    steps = [(e.time.timestamp(), int(m.group(1)), int(m.group(2))) for e in session[begun[-1]:] if
             (m := re.match(r"^dpo step (\d+)/(\d+)", e.msg))] if begun else []
    if steps:
        t1, i1, n = steps[-1]
        # one step so far: timed from `dpo: N pairs` (logged as training starts, after the models load)
        ready = [e.time.timestamp() for e in session[begun[-1]:] if e.msg.startswith("dpo: ")]
        t0, i0 = (steps[0][0], steps[0][1]) if len(steps) > 1 else (
            ready[-1] if ready else session[begun[-1]].time.timestamp(), 0)
        per = (t1 - t0) / (i1 - i0) if i1 > i0 else None
        if not per:
            return f"step {i1}/{n}", None
        return f"step {i1}/{n}", max(0.0, (n - i1) * per - (time.time() - t1 if running else 0.0))
    max_steps = (cfg.get("train") or {}).get("max_steps", -1)
    for j in range(k - 1, -1, -1):
        per = (io.read_json_or_none(out / f"round_{j}" / "train_stats.json") or {}).get("seconds_per_step")
        if isinstance(per, (int, float)) and isinstance(max_steps, int) and max_steps > 0:
            since = time.time() - session[begun[-1]].time.timestamp() if running and begun else 0.0
            return "starting", max(0.0, per * max_steps - since)
    return "starting", None


def _eval_seconds(ev: dict[str, Any] | None) -> float | None:
    secs = [s.get("seconds") for s in ((ev or {}).get("sets") or {}).values()]
    secs = [s for s in secs if isinstance(s, (int, float))]
    return float(sum(secs)) if secs else None


def round_status(out: Path, k: int, cfg: dict[str, Any], session: list[runlog.Event],
                 running: bool = False) -> dict[str, Any]:
    """Round K's stages, counts and ETA; `running`: a live process is working on the run (the ETA
    then counts from now, else it is the time left once resumed)."""
    d = out / f"round_{k}"
    prov = io.read_json_or_none(d / "provenance.json") or {}
    samples_per = int((cfg.get("solve") or {}).get("samples", 0)) or None
    problems = _records(d / "problems.jsonl")
    rollouts = _records(d / "rollouts.jsonl")
    by_pid: dict[str, set[int]] = defaultdict(set)
    for r in rollouts:
        by_pid[str(r.get("problem_id"))].add(int(r.get("sample_index", -1)))
    solved = sum(len(s) == samples_per for s in by_pid.values()) if samples_per else len(by_pid)
    pairs_done = (d / "pairs.jsonl").exists()
    n_pairs = len(_records(d / "pairs.jsonl")) if pairs_done else None
    train_on = bool((cfg.get("train") or {}).get("enabled", True))
    tr = io.read_json_or_none(d / "train_stats.json")
    ev = io.read_json_or_none(d / "eval.json")
    stages = {
        "problems": _stage((d / "problems.jsonl").exists(), "problems.jsonl" in prov),
        "solve": _stage(pairs_done or (bool(problems) and solved == len(problems)),
                        (d / "rollouts.jsonl").exists() or "rollouts.jsonl" in prov),
        "pair": _stage(pairs_done, "pairs.jsonl" in prov),
        "train": _stage(tr is not None, "train_stats.json" in prov) if train_on else OFF,
        "eval": _stage(ev is not None, "eval.json" in prov) if eval_enabled(cfg) and train_on else OFF,
    }
    if stages["solve"] == DONE and not (d / "problems.jsonl").exists():
        stages["solve"] = PENDING
    complete = round_complete(out, k, cfg)
    nxt = None if complete else next((s for s in STAGES if stages[s] not in (DONE, OFF)), None)
    current = nxt if nxt is not None and stages[nxt] == RUNNING else None
    counts = {"problems": len(problems) if (d / "problems.jsonl").exists() else None,
              "by_origin": dict(sorted(_count(p.get("origin") for p in problems).items())),
              "solved_problems": solved, "samples": len(rollouts),
              "samples_expected": len(problems) * samples_per if problems and samples_per else None,
              "pairs": n_pairs,
              "trained": (tr or {}).get("n_train"), "train_steps": (tr or {}).get("steps"),
              "not_trained": (tr or {}).get("reason") if (tr or {}).get("trained") is False else None}
    st: dict[str, Any] = {"round": k, "exists": d.is_dir(), "complete": complete, "in_progress": current, "next": nxt,
                          "stages": stages, "counts": counts, "eta_s": None, "progress": None}
    if current == "solve" and counts["samples_expected"]:
        rate = _solve_rate(out, k, len(rollouts), session)
        left = counts["samples_expected"] - len(rollouts)
        st["rate"] = rate
        if rate:
            rpath = d / "rollouts.jsonl"
            since = time.time() - rpath.stat().st_mtime if running and rpath.exists() else 0.0
            st["eta_s"] = max(0.0, left / rate - since)
    elif current == "train" and stages["train"] == RUNNING:
        st["progress"], st["eta_s"] = _train_eta(out, k, cfg, session, running)
    elif current == "eval" and stages["eval"] == RUNNING:
        prev = io.read_json_or_none(out / f"round_{k - 1}" / "eval.json" if k else out / "eval_base.json")
        st["eta_s"] = _eval_seconds(prev)
        begun = [e for e in session if e.msg.startswith("evaluating ")]
        if st["eta_s"] is not None and begun and running:
            st["eta_s"] = max(0.0, st["eta_s"] - (time.time() - begun[-1].time.timestamp()))
    if ev:
        st["eval"] = {name: {"pass@1": s.get("pass@1"), "pass@1_ci": s.get("pass@1_ci"), "n": s.get("n"),
                             "kind": set_kind(name, s)} for name, s in (ev.get("sets") or {}).items()}
        base = io.read_json_or_none(out / "eval_base.json")
        if base and base.get("sets"):  # each kind's paired gain against the start model (the summary's headline)
            st["gain"] = kind_headline(ev.get("sets") or {}, base["sets"])
    return st


def _count(items: Any) -> dict[str, int]:
    c: dict[str, int] = defaultdict(int)
    for x in items:
        c[str(x)] += 1
    return c


def run_status(out: str | Path) -> dict[str, Any]:
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"status: {out} is not a directory")
    cfg = io.read_json_or_none(out / "config.json")
    if cfg is None:
        raise ValueError(f"status: {out} holds no run (no readable config.json)")
    events = runlog.read(out)
    found = sessions(events)
    session = _run_session(events, found)
    planned = int((cfg.get("run") or {}).get("rounds", 1))
    existing = [int(m.group(1)) for p in out.iterdir() if (m := re.fullmatch(r"round_(\d+)", p.name)) and p.is_dir()]
    n = max([planned] + [k + 1 for k in existing])
    base = "off"
    if eval_enabled(cfg):
        base = _stage((out / "eval_base.json").exists(),
                      "eval_base.json" in (io.read_json_or_none(out / "provenance.json") or {}))
    last = events[-1] if events else None
    state = _run_state(events, found)
    running = state["state"] == "running"
    return {"out": str(out), "rounds_planned": planned, "config": {
                "seed": (cfg.get("run") or {}).get("seed"), "model": (cfg.get("model") or {}).get("name"),
                "backend": (cfg.get("model") or {}).get("backend"), "samples": (cfg.get("solve") or {}).get("samples")},
            **state, "resume": resume_command(out), "side_commands": _side_commands(events, found),
            "last_log": {"time": last.time.isoformat(), "level": last.level, "msg": last.msg} if last else None,
            "base_eval": base, "rounds": [round_status(out, k, cfg, session, running) for k in range(n)]}


def _eval_text(name: str, v: dict[str, Any]) -> str:
    """`heldout_procedural (in-distribution) pass@1 33.3% [9.7, 70.0]`: a set with its kind."""
    return f"{name} ({v.get('kind') or set_kind(name)}) pass@1 {fmt.pct(v['pass@1'], v['pass@1_ci'])}"


def _stage_line(name: str, state: str, st: dict[str, Any], running: bool) -> str:
    c = st["counts"]
    what = ""
    if name == "problems" and c["problems"] is not None:
        what = f"{c['problems']} problems ({fmt.counts(c['by_origin'])})"
    elif name == "solve" and state != PENDING:
        what = (f"{c['solved_problems']}/{c['problems']} problems solved, "
                f"{c['samples']}/{fmt.num(c['samples_expected'])} samples (rollouts.jsonl: {c['samples']} lines)")
        if state == RUNNING and st.get("rate"):
            what += f"; {fmt.num(st['rate'])} samples/s"
    elif name == "pair" and c["pairs"] is not None:
        what = f"{c['pairs']} pairs"
    elif name == "train" and state == DONE:
        what = (f"NOT TRAINED ({c['not_trained']})" if c["not_trained"]
                else f"{c['trained']} pairs, {c['train_steps']} steps")
    elif name == "train" and state == RUNNING and st.get("progress"):
        what = str(st["progress"])
    elif name == "eval" and st.get("eval"):
        what = "; ".join(_eval_text(k, v) for k, v in st["eval"].items())
    if state == RUNNING and st["eta_s"] is not None:
        what += ("; " if what else "") + (f"ETA {fmt.seconds(st['eta_s'])}" if running
                                          else f"about {fmt.seconds(st['eta_s'])} left once resumed")
    return f"  {name:<9} {state:<12} {what}".rstrip()


def format_status(s: dict[str, Any]) -> str:
    c = s["config"]
    lines = [f"run {s['out']}: {s['rounds_planned']} round(s) planned; model {c['model']} (backend "
             f"{c['backend']}), seed {c['seed']}, {c['samples']} samples per problem"]
    state = s["state"]
    done = sum(st["complete"] for st in s["rounds"])
    if state == "running":
        lines.append(f"state: running: {s['how']} (pid {s['pid']}, since {s['since']})")
    elif state == "no log":
        lines.append("state: unknown (run.log records no run: made by an older selfplay)")
    else:
        lines.append(f"state: {state}: {s['how']}")
    if state != "running":
        lines.append(f"{done} of {len(s['rounds'])} rounds complete" + (
            "" if done == len(s["rounds"]) else f"; `{s['resume']}` resumes the run"))
    for name, side in s["side_commands"].items():
        how = f"{side['outcome']} ({side['error']})" if side["error"] else side["outcome"]
        if side["outcome"] in ("running", "killed"):
            how += f" (pid {side['pid']})"
        lines.append(f"last {name}: {how}; `{side['command']}`, started {side['since']}")
    if s["last_log"]:
        ago = time.time() - _iso_ts(s["last_log"]["time"])
        lines.append(f"last log line ({fmt.seconds(ago)} ago): {s['last_log']['level']} {s['last_log']['msg']}")
    lines.append(f"base model eval: {s['base_eval']}")
    for st in s["rounds"]:
        k, c = st["round"], st["counts"]
        if st["complete"]:
            bits = [f"{c['problems']} problems", f"{c['samples']} samples", f"{c['pairs']} pairs"]
            if st["stages"]["train"] != OFF:
                bits.append(f"NOT TRAINED ({c['not_trained']})" if c["not_trained"] else f"trained {c['trained']}")
            if st.get("eval"):
                bits += [_eval_text(name, v) for name, v in st["eval"].items()]
            lines.append(f"round {k}: complete: " + ", ".join(bits))
            if st.get("gain"):
                lines.append(f"  gain vs start (greedy pass@1, paired, 95% CI): {st['gain']}")
            continue
        if not st["exists"]:
            lines.append(f"round {k}: not started")
            continue
        if st["in_progress"]:
            head = f"in progress: {st['in_progress']}"
        else:
            head = f"next: {st['next']}" if st["next"] else "finishing (stats, contamination check)"
        lines.append(f"round {k}: {head}")
        lines += [_stage_line(name, state, st, s["state"] == "running") for name, state in st["stages"].items()]
    return "\n".join(lines)


def _iso_ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
