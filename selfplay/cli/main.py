"""`selfplay` command line: `run` for the whole loop, one subcommand per stage, `eval`, `report`,
`status`, `export`, `audit`, `verify` (the parser and its help: selfplay/cli/parser.py)."""
from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

from selfplay.backends.models import check_model, resolve_model
from selfplay.backends.resources import build_verifier
from selfplay.cli.parser import RUN_FLAGS, _cfg_default, build_parser
from selfplay.config import Config, apply_overrides, load_config, parse_setting
from selfplay.core import console, io
from selfplay.core import log as runlog
from selfplay.core.log import log
from selfplay.evaluate.driver import format_gains, run_eval_cli
from selfplay.inspect.audit import audit_run, audit_steps, posed_sample, print_posed
from selfplay.inspect.export import check_push, push_to_hub, write_export
from selfplay.inspect.report import write_report
from selfplay.inspect.status import format_status, run_status
from selfplay.run import round as rnd
from selfplay.run.context import eval_sets, heldout_problems, make_context
from selfplay.run.layout import pair_files, prepare_out, run_config
from selfplay.run.loop import run_loop
from selfplay.run.train_round import stage_train
from selfplay.train.dist import world_size
from selfplay.verify.reverify import apply_relabel, downstream, relabel_file


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields a command line sets: each --set, then the flags given that name a field
    (a flag wins over a --set of its field)."""
    settings = dict(parse_setting(text) for text in getattr(args, "settings", []))
    return settings | {field: getattr(args, flag) for flag, field in RUN_FLAGS.items()
                       if getattr(args, flag, None) is not None}


def _stage_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """A stage command's config (model.name stays the run's base model) and its --model."""

    if args.round < 0:
        raise ValueError(f"{args.cmd}: --round must be >= 0, got {args.round}")
    overrides = overrides_from(args)
    model = overrides.pop("model.name", None)
    cfg = load_config(args.config, overrides)
    if model is not None:
        check_model(model, cfg.model.backend)
    return cfg, model


def _context(cfg: Any, round_idx: int, model: str | None):
    """The round's context: --model when given, else round K-1's trained model (refused if not
    trained)."""

    out = prepare_out(cfg)
    return make_context(cfg, out, round_idx, model=resolve_model(model) if model else None)


# what each stage command reads and must find complete (it never makes its inputs on the side)
_NEEDS = {"problems": (), "solve": ("problems.jsonl",), "pair": ("problems.jsonl", "rollouts.jsonl"),
          "stats": ("problems.jsonl", "rollouts.jsonl", "pairs.jsonl")}
_MAKES = {"problems.jsonl": "problems", "rollouts.jsonl": "solve", "pairs.jsonl": "pair"}


def cmd_stage(args: argparse.Namespace) -> int:
    cfg, model = _stage_config(args)
    with runlog.session(Path(cfg.run.out), f"{args.cmd} --round {args.round}"):
        rdir = Path(cfg.run.out) / f"round_{args.round}"
        for name in _NEEDS[args.cmd]:  # before OUT is touched: a refused stage leaves nothing behind
            if not (rdir / name).exists():
                raise ValueError(f"{args.cmd}: {rdir / name} not found; run `selfplay {_MAKES[name]} "
                                 f"--round {args.round}` first")
        return _stage(args, _context(cfg, args.round, model))


def _say(msg: str) -> None:
    """A command's result: on stdout, and into OUT/run.log when it works on a run."""

    print(msg, flush=True)
    runlog.append(msg)


def _stage(args: argparse.Namespace, ctx: Any) -> int:
    try:
        ctx.dir.mkdir(parents=True, exist_ok=True)
        problems = rnd.stage_problems(ctx)
        if args.cmd == "problems":
            _say(f"{len(problems)} problems -> {ctx.dir / 'problems.jsonl'}")
            return 0
        rollouts, timing = rnd.stage_solve(ctx, problems) if args.cmd == "solve" else (
            rnd.load_rollouts(ctx.dir / "rollouts.jsonl", ctx.cfg.solve.samples), {})
        if args.cmd == "solve":
            _say(f"{sum(map(len, rollouts.values()))} rollouts -> {ctx.dir / 'rollouts.jsonl'}")
            return 0
        pairs = rnd.stage_pair(ctx, problems, rollouts)
        rnd.write_stats(ctx.dir, rnd.round_stats(ctx, problems, rollouts, pairs, timing))
        _say(f"{len(pairs)} pairs -> {ctx.dir / 'pairs.jsonl'}" if args.cmd == "pair"
             else f"stats -> {ctx.dir / 'stats.json'}")
        return 0
    finally:
        ctx.close()


def _check_pairs(cfg: Any, round_idx: int) -> None:
    """Round K trains on the pairs of rounds 0..K: refused before OUT is touched when one is missing."""
    for path in pair_files(Path(cfg.run.out), round_idx):
        if not path.exists():
            raise ValueError(f"train: {path} not found; run `selfplay pair --round {path.parent.name[6:]}` first")


def cmd_train(args: argparse.Namespace) -> int:
    """`selfplay train --round K`: alone, or as every rank of `accelerate launch` (train_launch)."""
    import os


    cfg, model = _stage_config(args)
    if world_size() > 1 and os.environ.get("RANK", "0") != "0":
        _check_pairs(cfg, args.round)  # refused on every rank alike: none waits for a rank 0 that stopped
        stage_train(cfg, args.round, model)  # a helper rank: trains what rank 0 hands it, writes nothing
        return 0
    with runlog.session(Path(cfg.run.out), f"train --round {args.round}"):
        _check_pairs(cfg, args.round)
        stats = stage_train(cfg, args.round, model) or {}
        if stats.get("trained") is False:
            _say(f"round {args.round}: not trained ({stats.get('reason')})")
        else:
            _say(f"round {args.round}: trained {stats.get('steps')} steps on {stats.get('n_train')} pairs -> "
                 f"{Path(cfg.run.out) / f'round_{args.round}' / 'model'}")
    return 0


def _verifier_config(**verify: Any) -> Config:
    """The built-in config with [verify] settings from a command's flags (for build_verifier)."""
    return apply_overrides(Config(), {f"verify.{k}": v for k, v in verify.items()})


def cmd_verify(args: argparse.Namespace) -> int:
    path = Path(args.rollouts)
    probs = Path(args.problems) if args.problems else path.with_name("problems.jsonl")
    run_dir = path.resolve().parent.parent
    in_run = runlog.holds_run(run_dir)
    logged = runlog.session(run_dir, f"verify {path}") if in_run and not args.dry_run else nullcontext()
    with logged:  # inside a run: logged to OUT/run.log (a dry run writes nothing, not even there)
        with build_verifier(_verifier_config(timeout=args.timeout)) as verifier:
            r = relabel_file(path, probs, verifier)
        verdicts = f"{r.verdicts_changed} verdicts (label, reason or extracted answer)"
        if args.dry_run:
            print(f"dry run: re-verifying {len(r.new)} rollouts in {path} would change {r.labels_changed} labels, "
                  f"{verdicts}; nothing written", flush=True)
            would = downstream(path) if r.verdicts_changed else []
            if r.verdicts_changed:
                print(f"would rewrite {path}", flush=True)
            print(f"would move to {run_dir / 'stale'}/: " + ", ".join(str(p.relative_to(run_dir)) for p in would)
                  if would else "would move nothing", flush=True)
            return 0
        moved = apply_relabel(r)
        _say(f"re-verified {len(r.new)} rollouts in {path}: {r.labels_changed} labels changed, {verdicts} changed")
        if moved:
            _say(f"made from the old labels, moved to {run_dir / 'stale'}/: "
                 + ", ".join(str(p.relative_to(run_dir)) for p in moved) + "; `selfplay run` remakes them")
        elif in_run and not r.verdicts_changed:
            _say("no verdict changed: nothing moved; the rollouts' provenance names the current verifier")
    return 0


def _eval_config(path: str | None) -> Any:
    """--config of `eval`: a TOML file, a run's config.json, or (None) the built-in defaults."""

    if path is not None and Path(path).suffix == ".json":
        return run_config(Path(path))
    return load_config(path)


def _compare_file(path: str) -> dict[str, Any]:
    """--compare, read and checked before any model loads (a typo must not cost a whole eval)."""

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"eval: --compare {path}: file not found")
    try:
        d = io.read_json(p)
    except ValueError as e:
        raise ValueError(f"eval: --compare {path}: not JSON ({e})") from None
    sets = d.get("sets") if isinstance(d, dict) else None
    if not isinstance(sets, dict) or not any(isinstance(s, dict) and s.get("problems") for s in sets.values()):
        raise ValueError(f"eval: --compare {path}: not an eval JSON with per-problem records "
                         f"(made by `selfplay eval -o` or a run's eval.json)")
    return d


def cmd_eval(args: argparse.Namespace) -> int:
    cfg = _eval_config(args.config)
    e = cfg.eval
    samples = e.samples if args.samples is None else args.samples
    max_new = e.max_new_tokens if args.max_new_tokens is None else args.max_new_tokens
    seed = cfg.run.seed if args.seed is None else args.seed
    backend = args.backend or cfg.model.backend
    if samples < 1:
        raise ValueError("eval: --samples must be >= 1")
    if max_new < 1:
        raise ValueError("eval: --max-new-tokens must be >= 1")
    if args.heldout is not None and args.heldout < 0:
        raise ValueError("eval: --heldout must be >= 0")
    own_sets = not args.data and args.heldout is None
    if own_sets and args.config is None:
        raise ValueError("eval: give --data FILE.jsonl and/or --heldout N, or --config F for its eval sets")
    extra: dict[str, Any] = {}
    if own_sets:
        extra = eval_sets(cfg)
        if not extra:
            raise ValueError(f"eval: {args.config} has no eval set (eval.heldout_problems = 0, eval.ood = false and no eval.files)")
    elif args.heldout:
        cfg.eval.heldout_problems = args.heldout
        extra["heldout_procedural"] = heldout_problems(cfg)
    if not args.data and not extra:
        raise ValueError("eval: --heldout 0 and no --data: nothing to evaluate")
    compare = _compare_file(args.compare) if args.compare else None
    check_model(args.model, backend)
    if args.out and Path(args.out).is_dir():
        raise ValueError(f"eval: -o {args.out} is a directory; give a file name")
    # the flags override the config's evaluation settings; the one driver does the rest
    cfg.eval.samples, cfg.eval.max_new_tokens, cfg.run.seed, cfg.model.backend = samples, max_new, seed, backend
    result = run_eval_cli(cfg, args.model, args.data, Path(args.out) if args.out else None, args.limit,
                          extra_sets=extra, exclude=args.exclude)
    if compare is not None:

        print(format_gains(compare, result))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    if args.posed is not None:

        with build_verifier(_verifier_config(workers=1)) as verifier:
            print_posed(posed_sample(args.out, args.posed, args.round, args.seed, verifier))
        return 0
    if args.steps:
        audit_steps(args.out, args.round)
        return 0
    audit_run(args.out, args.round)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if not out.is_dir():
        raise ValueError(f"report: {out} is not a directory")
    print(write_report(out))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    s = run_status(args.out)
    if args.json:
        import orjson

        print(orjson.dumps(s, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_status(s))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    token = check_push(args.push_to_hub) if args.push_to_hub else None  # before anything is written
    out = Path(args.out)
    if not out.is_dir():
        raise ValueError(f"export: {out} is not a directory")
    with runlog.session(out, f"export --to {args.to}"):
        r = write_export(out, args.to, rounds=args.rounds, fmt=args.format, force=args.force,
                         license=args.license, name=args.name)
        _say(f"exported {r['pairs']} pairs of rounds {', '.join(map(str, r['rounds']))} "
             f"({', '.join(f'round {k}: {n}' for k, n in r['per_round'].items())}; {r['duplicates']} duplicates "
             f"dropped) -> {r['dir']} ({r['format']} + README.md dataset card)")
        if token is not None:
            _say(f"pushed to {push_to_hub(args.to, args.push_to_hub, token, private=args.private)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    overrides = overrides_from(args)
    out = Path(args.out or _cfg_default("run.out"))
    note = None
    if args.config is None and (out / "config.json").is_file():  # resume OUT with its own settings
        cfg = run_config(out, overrides)
        note = f"resuming {out} with its own settings ({out / 'config.json'})"
    else:
        cfg = load_config(args.config, overrides)
    with runlog.session(Path(cfg.run.out), "run"):  # run_loop's own session nests into this one
        run_loop(cfg, note=note)
        if cfg.train.enabled or cfg.eval.enabled:
            log(f"report -> {write_report(Path(cfg.run.out))}")
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
    handlers = {"run": cmd_run, "verify": cmd_verify, "eval": cmd_eval, "report": cmd_report, "audit": cmd_audit,
                "status": cmd_status, "export": cmd_export, "train": cmd_train}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        with console.configured(verbose=getattr(args, "verbose", False)):  # library output: OUT/engine.log
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
