"""The `selfplay` argument parser. Every subcommand has a description, its defaults (a flag that
overrides a config field names the field and its built-in default) and one example."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from selfplay import __version__
from selfplay.config import Config
from selfplay.core.provenance import verifier_version

RUN_FLAGS = {  # flag -> config field it overrides
    "out": "run.out", "rounds": "run.rounds", "seed": "run.seed", "model": "model.name",
    "backend": "model.backend", "problems": "seeds.problems", "samples": "solve.samples",
    "max_new_tokens": "solve.max_new_tokens", "pose_attempts": "pose.attempts", "pose_target": "pose.target",
    "temperature": "solve.temperature", "top_p": "solve.top_p", "batch_size": "model.batch_size",
    "executor": "run.executor", "ray_address": "run.ray_address", "workers": "run.workers",
}


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown for options that have one (not "(default: None)"); descriptions and
    examples keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == [] \
                or action.default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _cfg_default(field: str) -> Any:
    value: Any = Config()
    for part in field.split("."):
        value = getattr(value, part)
    return value


def _from_cfg(text: str, field: str) -> str:
    """Help for a flag that overrides a config field: where its default comes from."""
    return f"{text} (config {field}; built-in default {_cfg_default(field)!r})"


def _version_action() -> type[argparse.Action]:
    class Version(argparse.Action):
        def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
            super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

        def __call__(self, parser: argparse.ArgumentParser, *a: Any) -> None:
            print(f"selfplay {__version__} (verifier {verifier_version()}, python {sys.version.split()[0]})")
            parser.exit()

    return Version


def _sub(sub: Any, name: str, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=f"{summary.replace('%%', '%')}.\n\n{description}".rstrip(),
                          epilog=f"example:\n  {example}", formatter_class=_Help)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (see configs/default.toml); `run` without it resumes "
                   "OUT from OUT/config.json when there is one")
    p.add_argument("--out", help=_from_cfg("output directory OUT", "run.out"))
    p.add_argument("--seed", type=int, help=_from_cfg("run seed: every random draw derives from it", "run.seed"))
    p.add_argument("--model", help="'default' (embedded SmolLM2-135M-Instruct), a HF model id or a local dir "
                   "(config model.name); for a stage command: the model this round uses (default: round K-1's "
                   "trained model)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm", "scripted"],
                   help=_from_cfg("generation backend: auto = vllm when installed, else hf; 'scripted' is a fake "
                                  "for tests", "model.backend"))
    p.add_argument("--batch-size", type=int, help=_from_cfg("rows per forward pass (hf backend)", "model.batch_size"))
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", dest="settings",
                   help="set any config field over --config (repeatable; the value is TOML: true, 3, 0.5, "
                   '\'["add", "sub"]\', else a bare string), e.g. --set pose.enabled=false; a flag above for '
                   "the same field wins")
    _verbose(p)


def _verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show what vLLM, transformers, TRL, torch and Ray print (default: into OUT/engine.log)")


def _round_args(p: argparse.ArgumentParser, stage: bool = True) -> None:
    _common(p)
    if stage:
        p.add_argument("--round", type=int, default=0, help="round index K (files in OUT/round_K)")
    p.add_argument("--problems", type=int, help=_from_cfg("procedural seed problems per round", "seeds.problems"))
    p.add_argument("--samples", type=int, help=_from_cfg("reasoning paths per problem", "solve.samples"))
    p.add_argument("--max-new-tokens", type=int,
                   help=_from_cfg("token budget per reasoning path", "solve.max_new_tokens"))
    p.add_argument("--temperature", type=float, help=_from_cfg("sampling temperature for solving", "solve.temperature"))
    p.add_argument("--top-p", type=float, help=_from_cfg("nucleus sampling top-p for solving", "solve.top_p"))
    p.add_argument("--pose-attempts", type=int,
                   help=_from_cfg("posing budget: attempts per round at most (0 = off)", "pose.attempts"))
    p.add_argument("--pose-target", type=int,
                   help=_from_cfg("posed problems to keep per round (0 = all that pass)", "pose.target"))
    _executor_args(p)


def _executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "ray"],
                   help=_from_cfg("where pose and solve + verify run: this process, or Ray workers (docs/scale.md)",
                                  "run.executor"))
    p.add_argument("--ray-address", help=_from_cfg("with --executor ray: 'auto' or HOST:PORT joins a running cluster "
                                                   "(`ray start --head`); '' starts Ray in this process",
                                                   "run.ray_address"))
    p.add_argument("--workers", type=int, help=_from_cfg("with --executor ray: worker actors (0 = one per GPU, else "
                                                         "cluster CPUs // run.worker_cpus)", "run.workers"))


_STAGES = [("problems", "stage 1: seed + posed problems -> OUT/round_K/problems.jsonl",
            "Draws the round's seed problems and asks the round's model to pose new ones (each with a\n"
            "program whose output is its answer, run in the sandbox)."),
           ("solve", "stages 2-3: sample and verify -> OUT/round_K/rollouts.jsonl",
            "Samples --samples reasoning paths per problem and labels each final answer against the gold\n"
            "(correct | incorrect | unknown). Resumes from what rollouts.jsonl already holds."),
           ("pair", "stage 4: filter and pair -> OUT/round_K/pairs.jsonl",
            "Filters the paths (docs/filters.md) and pairs correct against incorrect ones of the same problem\n"
            "in TRL's conversational preference format."),
           ("stats", "recompute OUT/round_K/stats.json",
            "Recounts the round's stats from its files (keeps what training and evaluation added).")]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="selfplay", formatter_class=_Help,
        description="Reasoning training data by self-play: pose, solve, verify, pair (DPO), train, evaluate.\n"
                    "Each subcommand has its own --help with an example.",
        epilog="example:\n  selfplay run --config configs/default.toml --out runs/mine\n"
               "  selfplay status runs/mine\n  selfplay export runs/mine --to runs/mine-dpo")
    ap.add_argument("--version", action=_version_action(), help="print the version (and the verifier's fingerprint)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    run = _sub(sub, "run", "run (or resume) the whole loop for N rounds",
               "Per round: problems -> solve + verify -> pair -> train (DPO + NLL) -> held-out eval; then\n"
               "OUT/report.md. Kill it at any time and run the same command again: it continues where it\n"
               "stopped (a finished round prints 'round K complete, skipped'). Without --config, an OUT that\n"
               "holds a run is resumed with its own OUT/config.json. Progress goes to OUT/run.log.",
               "selfplay run --config configs/default.toml --out runs/mine --rounds 3")
    _round_args(run, stage=False)
    run.add_argument("--rounds", type=int, help=_from_cfg("number of rounds", "run.rounds"))
    for name, summary, description in _STAGES:
        _round_args(_sub(sub, name, summary, description,
                         f"selfplay {name} --config configs/default.toml --out runs/mine --round 0"))
    tr = _sub(sub, "train", "stage 5: DPO + NLL training of round K -> OUT/round_K/model",
              "Trains round K's model on its training set (OUT/round_K/train_pairs.jsonl, made from the pairs of\n"
              "rounds 0..K as the collapse guard says) and writes train_stats.json. Runs under a launcher too:\n"
              "`accelerate launch --multi_gpu --num_processes N -m selfplay train --round K --out OUT` trains\n"
              "with N processes (DDP; gloo on CPU), `--config_file F` with DeepSpeed ZeRO-2/3; rank 0 writes\n"
              "(docs/scale.md). train.launcher = \"accelerate\" makes the stage launch itself that way.",
              "selfplay train --round 0 --out runs/mine")
    _common(tr)
    tr.add_argument("--round", type=int, default=0, help="round index K (files in OUT/round_K)")
    ev = _sub(sub, "eval", "held-out evaluation of any model: pass@1 (greedy), maj@k, pass@k with 95%% CIs",
              "Settings (samples, token budget, temperature, seed, backend, sets) come from --config's [eval]\n"
              "section, or from the built-in defaults without one, so `--config OUT/config.json` with a\n"
              "round's model repeats the run's own evaluation (OUT/round_K/eval.json); flags override them.\n"
              "Without --data or --heldout the config's eval sets are used (which needs --config).",
              "selfplay eval --model runs/mine/round_0/model --config runs/mine/config.json "
              "--compare runs/mine/eval_base.json")
    ev.add_argument("--model", required=True, help="'default', a HF model id, or a saved dir (e.g. OUT/round_0/model)")
    ev.add_argument("--config", help="TOML config, or a run's OUT/config.json: its [eval] settings and sets")
    ev.add_argument("--data", action="append", default=[],
                    help="JSONL eval set (GSM8K, SVAMP, MAWPS or question/answer format); repeatable")
    ev.add_argument("--heldout", type=int, metavar="N",
                    help="evaluate the first N problems of the procedural held-out split (generators, levels and "
                         "seed from the config; the loop's own held-out set is its first eval.heldout_problems)")
    ev.add_argument("--exclude", action="append", default=[], metavar="PROBLEMS.jsonl",
                    help="drop eval problems whose question (normalized) appears in this problems file, "
                         "e.g. every OUT/round_*/problems.jsonl of a run; repeatable; the count is printed")
    ev.add_argument("--compare", metavar="EVAL.json",
                    help="an earlier eval JSON on the same sets: print the paired gain against it (checked "
                         "before the evaluation starts)")
    ev.add_argument("--samples", type=int, help=_from_cfg("sampled paths per problem for maj@k/pass@k (1 = greedy "
                                                          "only)", "eval.samples"))
    ev.add_argument("--limit", type=int, help="first N problems of each --data file (config: eval.file_limit)")
    ev.add_argument("--max-new-tokens", type=int, help=_from_cfg("token budget per answer", "eval.max_new_tokens"))
    ev.add_argument("--backend", choices=["auto", "hf", "vllm", "scripted"],
                    help=_from_cfg("generation backend: auto = vllm when installed, else hf", "model.backend"))
    ev.add_argument("--seed", type=int, help=_from_cfg("eval seed: every sampled path's seed derives from it",
                                                       "run.seed"))
    ev.add_argument("-o", "--out", help="write the result JSON here")
    _verbose(ev)
    aud = _sub(sub, "audit", "re-check every pair with math-verify, an independent checker",
               "Re-checks each pair's chosen and rejected answer against its gold with math-verify and prints\n"
               "the disagreements by class (docs/filters.md). With --posed N it lists posed problems instead;\n"
               "with --steps, the chosen paths with a false or unreadable arithmetic step.",
               "selfplay audit runs/mine --round 0\n  selfplay audit runs/mine --posed 50 > posed.md\n"
               "  selfplay audit runs/mine --steps")
    aud.add_argument("out", metavar="OUT", help="the run directory")
    aud.add_argument("--round", type=int, help="only OUT/round_K (default: every round)")
    aud.add_argument("--posed", type=int, metavar="N",
                     help="instead: print N random posed problems with program, gold, second witness and "
                          "solver answers, as Markdown to judge by hand (docs/audits/posed.md)")
    aud.add_argument("--seed", type=int, default=0, help="the --posed draw's seed (default 0)")
    aud.add_argument("--steps", action="store_true",
                     help="instead: step-check every pair (selfplay_verifiers.steps) and list the chosen with a false or "
                          "unreadable statement or an unevaluated answer (docs/filters.md)")
    rep = _sub(sub, "report", "write OUT/report.md, OUT/report.html and PNG plots from a run directory",
               "One row per round (data, training, in- and out-of-distribution accuracy with 95% intervals),\n"
               "paired gains, training sets, filters, diversity and plots; report.html (one offline file) adds\n"
               "browsers of the pairs, posed problems and dropped paths (docs/report.md). Works on runs made\n"
               "before report.html existed.", "selfplay report --out runs/mine")
    rep.add_argument("--out", required=True, help="the run directory (OUT)")
    st = _sub(sub, "status", "what a run has done, is doing, and how long it still needs",
              "Per round: which stages are done (problems, solve, pair, train, eval), which is in progress,\n"
              "the counts so far (the records in its files) and an ETA from the rates in OUT/run.log or an\n"
              "earlier round's stats; the run's state (from its `run` and stage commands) with the command that\n"
              "resumes it, and apart, how the last export and verify went. Reads files only; safe while the run\n"
              "is going.", "selfplay status runs/mine")
    st.add_argument("out", metavar="OUT", help="the run directory")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    exp = _sub(sub, "export", "export the run's pairs as a Hub dataset with a dataset card",
               "Writes DIR/data/ (the merged, de-duplicated pairs of the chosen rounds, flattened: TRL's\n"
               "prompt/chosen/rejected plus pair_id, round, problem, gold, answers, pass rate, mode, posing\n"
               "program and model columns) and DIR/README.md (a dataset card). `datasets.load_dataset(DIR)`\n"
               "loads it; DPOTrainer trains on it as it is. Written atomically.",
               "selfplay export runs/mine --to runs/mine-dpo --rounds 0,1 --push-to-hub me/selfplay-dpo")
    exp.add_argument("out", metavar="OUT", help="the run directory")
    exp.add_argument("--to", required=True, metavar="DIR", help="the export directory (new or empty; see --force)")
    exp.add_argument("--rounds", help="rounds to export, e.g. 0,1 or 0-2 (default: every round with pairs.jsonl)")
    exp.add_argument("--format", choices=["parquet", "jsonl"], default="parquet", help="data file format")
    exp.add_argument("--license", default="apache-2.0", help="licence named in the card (SPDX-style id)")
    exp.add_argument("--name", help="dataset title in the card (default: 'selfplay DPO pairs: <OUT name>')")
    exp.add_argument("--force", action="store_true", help="replace a non-empty DIR")
    exp.add_argument("--push-to-hub", metavar="REPO", help="also upload DIR to this Hub dataset repo (needs a token: "
                     "`hf auth login` or HF_TOKEN)")
    exp.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    ver = _sub(sub, "verify", "re-verify a rollouts.jsonl with the current verifier (in place, atomic)",
               "Relabels every rollout. When a verdict (label, reason or extracted answer) changed, the file\n"
               "is rewritten and, inside a run, what was made from the old verdicts (round K's pairs, training\n"
               "set, model, eval, stats, and every later round) moves to OUT/stale/; `selfplay run` remakes it.\n"
               "When none changed, nothing is rewritten or moved: the rollouts' provenance then names the\n"
               "current verifier, so `selfplay run` accepts them and goes on.",
               "selfplay verify runs/mine/round_0/rollouts.jsonl --dry-run")
    ver.add_argument("rollouts", help="OUT/round_K/rollouts.jsonl")
    ver.add_argument("--problems", help="problems.jsonl with the gold answers (default: beside rollouts)")
    ver.add_argument("--timeout", type=float, default=3.0, help="seconds per answer comparison")
    ver.add_argument("--dry-run", action="store_true",
                     help="relabel in memory and print how many labels would change and what would move to "
                          "OUT/stale/; write nothing (not even OUT/run.log)")
    return ap
