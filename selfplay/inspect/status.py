"""`selfplay status OUT`: which stages of each round are done, what is in progress, the counts so
far and an ETA, read from the files a run leaves (its markers), never from the processes, plus
OUT/run.log for the run's state and its rates.

A stage is done when its output file exists (outputs are written atomically, last). A stage is in
progress when it has begun: its provenance entry is written before it starts (selfplay.core.provenance),
and solving appends to rollouts.jsonl as it goes. Counts are the records in the files: problems =
lines of problems.jsonl, samples = lines of rollouts.jsonl, solved problems = problems with all
their samples there, pairs = lines of pairs.jsonl. Nothing is written.
"""
from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from selfplay.core import fmt, io
from selfplay.core import log as runlog
from selfplay.run.layout import eval_enabled, round_complete

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


def _run_state(out: Path, events: list[runlog.Event]) -> dict[str, Any]:
    starts = [i for i, e in enumerate(events) if e.msg.startswith("START ")]
    if not starts:
        return {"state": "no log", "pid": None}
    last = events[starts[-1]:]
    pid = last[0].pid
    end = next((e for e in last if e.pid == pid and e.msg.startswith("END ")), None)
    command = last[0].msg[6:].split(" (selfplay", 1)[0]
    if end is not None:
        err = [e.msg for e in last if e.pid == pid and e.level == "ERROR" and not e.msg.startswith("END ")]
        how = f"`{command}` ended with an error: {err[-1]}" if err else f"`{command}` ended: {end.msg[4:]}"
        return {"state": "finished" if end.msg.startswith("END ok") else "stopped", "pid": pid,
                "how": how, "since": last[0].time.isoformat()}
    alive = _alive(pid)
    return {"state": "running" if alive else "stopped", "pid": pid, "since": last[0].time.isoformat(),
            "how": f"`{command}`" + ("" if alive else f" (pid {pid}) stopped without an END line: killed")}


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


def _session(events: list[runlog.Event]) -> list[runlog.Event]:
    starts = [i for i, e in enumerate(events) if e.msg.startswith("START ")]
    return events[starts[-1]:] if starts else []


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
        rate = ((io.read_json_or_none(out / f"round_{j}" / "stats.json") or {}).get("timing") or {}).get("samples_per_s")
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
            since = time.time() - (d / "rollouts.jsonl").stat().st_mtime if running and (d / "rollouts.jsonl").exists() else 0.0
            st["eta_s"] = max(0.0, left / rate - since)
    elif current == "train" and stages["train"] == RUNNING:
        st["progress"], st["eta_s"] = _train_eta(out, k, cfg, session, running)
    elif current == "eval" and stages["eval"] == RUNNING:
        prev = io.read_json_or_none(out / f"round_{k - 1}" / "eval.json") if k else io.read_json_or_none(out / "eval_base.json")
        st["eta_s"] = _eval_seconds(prev)
        begun = [e for e in session if e.msg.startswith("evaluating ")]
        if st["eta_s"] is not None and begun and running:
            st["eta_s"] = max(0.0, st["eta_s"] - (time.time() - begun[-1].time.timestamp()))
    if ev:
        st["eval"] = {name: {"pass@1": s.get("pass@1"), "pass@1_ci": s.get("pass@1_ci"), "n": s.get("n")}
                      for name, s in (ev.get("sets") or {}).items()}
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
    session = _session(events)
    planned = int((cfg.get("run") or {}).get("rounds", 1))
    existing = [int(m.group(1)) for p in out.iterdir() if (m := re.fullmatch(r"round_(\d+)", p.name)) and p.is_dir()]
    n = max([planned] + [k + 1 for k in existing])
    base = "off"
    if eval_enabled(cfg):
        base = _stage((out / "eval_base.json").exists(), "eval_base.json" in (io.read_json_or_none(out / "provenance.json") or {}))
    last = events[-1] if events else None
    state = _run_state(out, events)
    running = state["state"] == "running"
    return {"out": str(out), "rounds_planned": planned, "config": {
                "seed": (cfg.get("run") or {}).get("seed"), "model": (cfg.get("model") or {}).get("name"),
                "backend": (cfg.get("model") or {}).get("backend"), "samples": (cfg.get("solve") or {}).get("samples")},
            **state,
            "last_log": {"time": last.time.isoformat(), "level": last.level, "msg": last.msg} if last else None,
            "base_eval": base, "rounds": [round_status(out, k, cfg, session, running) for k in range(n)]}


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
        what = "; ".join(f"{k} pass@1 {fmt.pct(v['pass@1'], v['pass@1_ci'])}" for k, v in st["eval"].items())
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
        lines.append("state: unknown (no run.log: made by an older selfplay)")
    else:
        lines.append(f"state: {state}: {s['how']}")
    if state != "running":
        lines.append(f"{done} of {len(s['rounds'])} rounds complete" + (
            "" if done == len(s["rounds"]) else f"; `selfplay run --out {s['out']}` resumes the run"))
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
                bits += [f"{name} pass@1 {fmt.pct(v['pass@1'], v['pass@1_ci'])}" for name, v in st["eval"].items()]
            lines.append(f"round {k}: complete: " + ", ".join(bits))
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
