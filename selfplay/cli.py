"""`selfplay` command line: `run` for the whole loop, one subcommand per stage, `eval`, `report`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

RUN_FLAGS = {  # flag -> config field it overrides
    "out": "run.out", "rounds": "run.rounds", "seed": "run.seed", "model": "model.name",
    "backend": "model.backend", "problems": "seeds.problems", "samples": "solve.samples",
    "max_new_tokens": "solve.max_new_tokens", "pose_attempts": "pose.attempts",
    "temperature": "solve.temperature", "top_p": "solve.top_p", "batch_size": "model.batch_size",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (see configs/default.toml)")
    p.add_argument("--out", help="output directory (default: run.out = runs/default)")
    p.add_argument("--seed", type=int, help="run seed: every random draw derives from it")
    p.add_argument("--model", help="'default' (embedded SmolLM2-135M-Instruct), a HF model id or a local dir; "
                   "for a stage command: the model this round uses (default: round K-1's trained model)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm", "scripted"],
                   help="generation backend (default auto: vllm when installed, else hf; "
                        "'scripted' is a fake for tests)")
    p.add_argument("--batch-size", type=int, help="rows per forward pass (hf backend)")


def _round_args(p: argparse.ArgumentParser, stage: bool = True) -> None:
    _common(p)
    if stage:
        p.add_argument("--round", type=int, default=0, help="round index K (files in OUT/round_K)")
    p.add_argument("--problems", type=int, help="procedural seed problems per round")
    p.add_argument("--samples", type=int, help="reasoning paths per problem (default 8)")
    p.add_argument("--max-new-tokens", type=int, help="token budget per reasoning path")
    p.add_argument("--temperature", type=float, help="sampling temperature for solving")
    p.add_argument("--top-p", type=float, help="nucleus sampling top-p for solving")
    p.add_argument("--pose-attempts", type=int, help="problems the model is asked to pose per round (0 = off)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="selfplay", description="Reasoning training data by self-play: "
                                 "pose, solve, verify, pair (DPO), train, evaluate.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run (or resume) the whole loop for N rounds")
    _round_args(run, stage=False)
    run.add_argument("--rounds", type=int, help="number of rounds (default 1)")
    for name, hlp in [("problems", "stage 1: seed + posed problems -> problems.jsonl"),
                      ("solve", "stages 2-3: sample and verify -> rollouts.jsonl"),
                      ("pair", "stage 4: rollouts -> pairs.jsonl"),
                      ("stats", "recompute stats.json of a round")]:
        _round_args(sub.add_parser(name, help=hlp))
    ev = sub.add_parser("eval", help="held-out evaluation of any model: pass@1 (greedy), maj@k, pass@k with 95%% CIs")
    ev.add_argument("--model", required=True, help="'default', a HF model id, or a saved dir (e.g. OUT/round_0/model)")
    ev.add_argument("--data", action="append", default=[],
                    help="JSONL eval set (GSM8K, SVAMP, MAWPS or question/answer format); repeatable")
    ev.add_argument("--heldout", type=int, default=0, metavar="N",
                    help="also evaluate the first N problems of the procedural held-out split (generators, "
                         "levels and seed from --config; the loop's own held-out set is its first "
                         "eval.heldout_problems)")
    ev.add_argument("--config", help="TOML config for --heldout (default: built-in defaults)")
    ev.add_argument("--exclude", action="append", default=[], metavar="PROBLEMS.jsonl",
                    help="drop eval problems whose question (normalized) appears in this problems file, "
                         "e.g. every OUT/round_*/problems.jsonl of a run; repeatable; the count is printed")
    ev.add_argument("--compare", metavar="EVAL.json",
                    help="an earlier eval JSON on the same sets: print the paired gain against it")
    ev.add_argument("--samples", type=int, default=8, help="sampled paths per problem for maj@k/pass@k (1 = greedy only)")
    ev.add_argument("--limit", type=int, help="first N problems of each file")
    ev.add_argument("--max-new-tokens", type=int, default=256)
    ev.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto",
                    help="generation backend (default auto: vllm when installed, else hf)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("-o", "--out", help="write the result JSON here")
    aud = sub.add_parser("audit", help="re-check every pair's chosen and rejected answer with math-verify (a second, "
                         "independent checker) against its gold; print the disagreements by class")
    aud.add_argument("out", metavar="OUT", help="the run directory")
    aud.add_argument("--round", type=int, help="only OUT/round_K (default: every round)")
    rep = sub.add_parser("report", help="write OUT/report.md and PNG plots from a run directory")
    rep.add_argument("--out", required=True, help="the run directory (OUT)")
    ver = sub.add_parser("verify", help="re-verify a rollouts.jsonl with the current verifier (in place, atomic)")
    ver.add_argument("rollouts", help="OUT/round_K/rollouts.jsonl")
    ver.add_argument("--problems", help="problems.jsonl with the gold answers (default: beside rollouts)")
    ver.add_argument("--timeout", type=float, default=3.0)
    return ap


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, flag) for flag, field in RUN_FLAGS.items() if hasattr(args, flag)}


def _context(args: argparse.Namespace, round_idx: int):
    """A stage command's round: the run's config (model.name stays the run's base model) and the
    round's model: --model when given, else round K-1's trained model (refused if not trained)."""
    from selfplay.config import load_config
    from selfplay.loop import make_context, prepare_out
    from selfplay.models import check_model, resolve_model

    if round_idx < 0:
        raise ValueError(f"{args.cmd}: --round must be >= 0, got {round_idx}")
    overrides = overrides_from(args)
    model = overrides.pop("model.name", None)
    cfg = load_config(args.config, overrides)
    if model is not None:
        check_model(model, cfg.model.backend)
    out = prepare_out(cfg)
    return make_context(cfg, out, round_idx, model=resolve_model(model) if model else None)


# what each stage command reads and must find complete (it never makes its inputs on the side)
_NEEDS = {"problems": (), "solve": ("problems.jsonl",), "pair": ("problems.jsonl", "rollouts.jsonl"),
          "stats": ("problems.jsonl", "rollouts.jsonl", "pairs.jsonl")}
_MAKES = {"problems.jsonl": "problems", "rollouts.jsonl": "solve", "pairs.jsonl": "pair"}


def cmd_stage(args: argparse.Namespace) -> int:
    from selfplay import round as rnd

    ctx = _context(args, args.round)
    try:
        for name in _NEEDS[args.cmd]:
            if not (ctx.dir / name).exists():
                raise ValueError(f"{args.cmd}: {ctx.dir / name} not found; run `selfplay {_MAKES[name]} "
                                 f"--round {args.round}` first")
        ctx.dir.mkdir(parents=True, exist_ok=True)
        problems = rnd.stage_problems(ctx)
        if args.cmd == "problems":
            print(f"{len(problems)} problems -> {ctx.dir / 'problems.jsonl'}")
            return 0
        rollouts, timing = rnd.stage_solve(ctx, problems) if args.cmd == "solve" else (
            rnd.load_rollouts(ctx.dir / "rollouts.jsonl", ctx.cfg.solve.samples), {})
        if args.cmd == "solve":
            print(f"{sum(map(len, rollouts.values()))} rollouts -> {ctx.dir / 'rollouts.jsonl'}")
            return 0
        pairs = rnd.stage_pair(ctx, problems, rollouts)
        rnd.write_stats(ctx.dir, rnd.round_stats(ctx, problems, rollouts, pairs, timing))
        print(f"{len(pairs)} pairs -> {ctx.dir / 'pairs.jsonl'}" if args.cmd == "pair" else f"stats -> {ctx.dir / 'stats.json'}")
        return 0
    finally:
        ctx.close()


def cmd_verify(args: argparse.Namespace) -> int:
    from selfplay.verify_stage import invalidate_downstream, reverify_file

    path = Path(args.rollouts)
    probs = Path(args.problems) if args.problems else path.with_name("problems.jsonl")
    changed, total = reverify_file(path, probs, timeout=args.timeout)
    print(f"re-verified {total} rollouts in {path}: {changed} labels changed")
    moved = invalidate_downstream(path)
    if moved:
        print(f"made from the old labels, moved to {path.resolve().parents[1] / 'stale'}/: "
              + ", ".join(str(p.relative_to(path.resolve().parents[1])) for p in moved)
              + "; `selfplay run` remakes them")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from selfplay.evaluate import run_eval_cli

    if args.samples < 1:
        raise ValueError("eval: --samples must be >= 1")
    if not args.data and args.heldout <= 0:
        raise ValueError("eval: give --data FILE.jsonl and/or --heldout N")
    from selfplay.models import check_model

    check_model(args.model, args.backend)
    if args.out and Path(args.out).is_dir():
        raise ValueError(f"eval: -o {args.out} is a directory; give a file name")
    extra = {}
    if args.heldout > 0:
        from selfplay.config import load_config
        from selfplay.loop import heldout_problems

        cfg = load_config(args.config)
        cfg.eval.heldout_problems = args.heldout
        extra["heldout_procedural"] = heldout_problems(cfg)
    result = run_eval_cli(args.model, args.data, args.samples, Path(args.out) if args.out else None, args.limit,
                          backend_name=args.backend, max_new_tokens=args.max_new_tokens, seed=args.seed,
                          extra_sets=extra, exclude=args.exclude)
    if args.compare:
        from selfplay import io
        from selfplay.evaluate import format_gains

        print(format_gains(io.read_json(args.compare), result))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from selfplay.audit import audit_run

    audit_run(args.out, args.round)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from selfplay.report import write_report

    out = Path(args.out)
    if not out.is_dir():
        raise ValueError(f"report: {out} is not a directory")
    print(write_report(out))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from selfplay.config import load_config
    from selfplay.loop import run_loop

    cfg = load_config(args.config, overrides_from(args))
    run_loop(cfg)
    return 0


class Terminated(Exception):
    """SIGTERM/SIGHUP arrived: unwind like Ctrl-C so every `finally` runs (the vLLM engine's worker
    processes are shut down instead of orphaned, the verifier pool and sandbox are stopped)."""


def _on_signal(signum: int, _frame: Any) -> None:
    import signal

    raise Terminated(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "verify": cmd_verify, "eval": cmd_eval, "report": cmd_report, "audit": cmd_audit}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        return handlers.get(args.cmd, cmd_stage)(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"selfplay: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unwritable --out, disk full, a path that is a file: one line, no traceback
        print(f"selfplay: error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # missing extras, sandbox unavailable: one line, no traceback
        print(f"selfplay: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfplay: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Terminated as e:
        print(f"selfplay: stopped by {e}; rerun the same command to resume", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
