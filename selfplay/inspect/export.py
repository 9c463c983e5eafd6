"""`selfplay export OUT --to DIR`: the pairs of a run as a Hub-ready dataset with a dataset card.

DIR gets `data/train-<content hash>.parquet` (or `.jsonl`) and a README.md whose YAML
front matter names the data files, so `datasets.load_dataset(DIR)` (or the Hub repo) loads a
`train` split. Every record keeps TRL's conversational `prompt` / `chosen` / `rejected` exactly as
the run wrote them (DPOTrainer takes the split unchanged) and flattens the pair's metadata into
columns: a stable `pair_id` (content hash of prompt + chosen + rejected), round, problem id
(qualified by its round, `r0/...`: the run's ids may name another question in another round),
origin, gold, extracted answers, pass rate, mode, the posing program of a posed problem, and the
sampling and posing models as identifiers that mean something elsewhere (a hub id, or a path
relative to OUT with a content fingerprint; never a path of this machine or of the run's working
directory). Pairs found in several rounds are kept once (the earliest). The card's YAML declares
the columns' `datasets` features, so a parquet and a jsonl export load with the same ones.

DIR is written in a temporary sibling directory and renamed into place, so a failure leaves no
half-written export; a non-empty DIR is refused unless --force (which replaces it whole).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from selfplay import __version__
from selfplay.backends.models import DEFAULT_ALIASES, _hub_transport_errors
from selfplay.core import io, provenance
from selfplay.inspect.export_card import card_text
from selfplay.inspect.export_schema import COLUMNS, EMBEDDED_HUB_ID, FORMATS
from selfplay_verifiers.steps import stated_value


def pair_id(prompt: Any, chosen: Any, rejected: Any) -> str:
    """Stable content hash (sorted-key JSON, so key order never matters)."""
    data = orjson.dumps([prompt, chosen, rejected], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()[:20]


def round_dirs(out: Path) -> dict[int, Path]:
    return {int(m.group(1)): d for d in out.iterdir()
            if d.is_dir() and (m := re.fullmatch(r"round_(\d+)", d.name))}


def parse_rounds(spec: str | None, out: Path) -> list[int]:
    """"0,1" / "0-2" / None (every round with pairs.jsonl) -> sorted round numbers, each checked."""
    have = sorted(k for k, d in round_dirs(out).items() if (d / "pairs.jsonl").is_file())
    if spec is None:
        if not have:
            raise ValueError(f"export: no round_K/pairs.jsonl under {out}")
        return have
    rounds: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None:
            raise ValueError(f"export: --rounds {spec!r}: expected round numbers like 0,1 or 0-2")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"export: --rounds {spec!r}: empty range {lo}-{hi}")
        rounds.update(range(lo, hi + 1))
    missing = [k for k in sorted(rounds) if k not in have]
    if missing:
        raise ValueError(f"export: --rounds {spec}: {out}/round_{missing[0]}/pairs.jsonl not found "
                         f"(rounds with pairs: {', '.join(map(str, have)) or 'none'})")
    return sorted(rounds)


# a hub id ("org/name" or "name"); anything else that is not a directory of the run is local to the machine
_HUB_ID = re.compile(r"[\w-][\w.-]*(?:/[\w-][\w.-]*)?")


def model_ref(model: str, out: Path, recorded: dict[str, Any] | None = None) -> tuple[str, str | None]:
    """(identifier, fingerprint) of a sampling (or posing) model as a pair recorded it. `recorded`: the
    round's provenance entry for rollouts.jsonl (model + fingerprint taken when the round ran)."""
    if not model:
        return "", None
    fp = None
    taken = str((recorded or {}).get("model_fingerprint", "id:"))
    if recorded and recorded.get("model") in (model, provenance.relative_to_out(model, out)) \
            and provenance.is_content_fingerprint(taken):  # entries name models inside OUT relative to OUT
        fp = taken
    p = Path(model).expanduser()
    if model in DEFAULT_ALIASES or (p.name == "SmolLM2-135M-Instruct" and p.parent.name == "models"):
        return EMBEDDED_HUB_ID, fp or (provenance.model_fingerprint(model) if p.is_dir() else None)
    place = provenance.run_model_place(model)
    if place and (out / place).is_dir():
        return place, fp or provenance.model_fingerprint(str(out / place))
    if place:  # the run's model dir is gone: its place in the run and the fingerprint taken then
        return place, fp
    if p.is_dir() or p.is_absolute() or model.startswith("."):  # a local directory outside the run
        try:
            return str(p.resolve().relative_to(out.resolve())), fp or provenance.model_fingerprint(str(p))
        except ValueError:
            return f"local:{p.name}", fp or (provenance.model_fingerprint(str(p)) if p.is_dir() else None)
    if not _HUB_ID.fullmatch(model):  # a path relative to the run's working directory, gone since
        return f"local:{p.name}", None
    return model, None  # a hub id


def source_ref(origin: str | None, source: str, ref: Callable[[str], tuple[str, str | None]]) -> str:
    """The `source` column: the posing model named like `model` (`ref`: model_ref of the round), a seed
    file by its name, an HF dataset by its hub id or `local:NAME` for a local copy."""
    if origin == "posed":
        return ref(source)[0]
    if origin == "file":
        return Path(source).name
    if origin == "hf" and source and (not _HUB_ID.fullmatch(source) or Path(source).is_dir()):
        return f"local:{Path(source).name}"
    return source


def _cached_ref(refs: dict[str, tuple[str, str | None]], out: Path, recorded: dict[str, Any],
                model: str) -> tuple[str, str | None]:
    if model not in refs:
        refs[model] = model_ref(model, out, recorded)
    return refs[model]


def _programs(rdir: Path) -> dict[str, str]:
    path = rdir / "problems.jsonl"
    if not path.exists():
        return {}
    return {str(d["id"]): d["program"] for d in io.iter_jsonl(path) if d.get("origin") == "posed" and d.get("program")}


def problem_ref(k: int, pid: str, origin: str | None, source: str, exported_source: str) -> str:
    """`r<k>/<id>`; an HF dataset's ids start with its name (`_home_me_gsm8k-3` for a local copy at
    /home/me/gsm8k): they take the exported name instead (`gsm8k-3`)."""
    prefix = source.replace("/", "_") + "-"
    if origin == "hf" and source != exported_source and pid.startswith(prefix):
        pid = exported_source.removeprefix("local:").replace("/", "_") + "-" + pid[len(prefix):]
    return f"r{k}/{pid}"


def flatten(pair: dict[str, Any], k: int, programs: dict[str, str],
            ref: Callable[[str], tuple[str, str | None]]) -> dict[str, Any]:
    """One export record of a pair of round `k`; `ref`: model_ref of the round's models."""
    md = pair.get("metadata") or {}
    s = md.get("sampling") or {}
    pid, origin, source = str(md.get("problem_id", "")), md.get("origin"), md.get("source")
    exported_source = None if source is None else source_ref(origin, str(source), ref)
    model = ref(str(md.get("model", "")))
    return {
        "pair_id": pair_id(pair["prompt"], pair["chosen"], pair["rejected"]),
        "prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"],
        "round": k, "problem_id": problem_ref(k, pid, origin, str(source), str(exported_source)), "origin": origin,
        "source": exported_source, "level": md.get("level"), "question": md.get("question"),
        "gold": None if md.get("gold") is None else str(md["gold"]),
        "gold_source": md.get("gold_source", "trusted"), "agreement": md.get("agreement"),
        "mode": md.get("mode") or "cot", "program": programs.get(pid),
        # the value stated, not the sentence around it ("1 + 9 = 10." -> "10"), for runs made before
        # the verifier returned it
        "chosen_extracted": stated_value(md.get("chosen_extracted")),
        "rejected_extracted": stated_value(md.get("rejected_extracted")),
        "pass_rate": md.get("pass_rate"), "chosen_tokens": md.get("chosen_tokens"),
        "rejected_tokens": md.get("rejected_tokens"), "chosen_logprob": md.get("chosen_logprob"),
        "rejected_logprob": md.get("rejected_logprob"), "crosscheck": md.get("crosscheck"),
        "granularity": md.get("granularity", "path"),
        "first_error": (md.get("first_error") or {}).get("statement"),
        "model": model[0], "model_fingerprint": model[1],
        "sampling_temperature": s.get("temperature"), "sampling_top_p": s.get("top_p"),
        "sampling_max_new_tokens": s.get("max_new_tokens"), "sampling_n": s.get("n"),
    }


def collect(out: Path, rounds: Sequence[int]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Flattened, de-duplicated records of `rounds` and what the card says about them."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    info: dict[str, Any] = {"rounds": list(rounds), "per_round": {}, "duplicates": 0, "models": [],
                            "filters": {}, "crosscheck": {}, "verifiers": {}, "steps": {}}
    for k in rounds:
        rdir = out / f"round_{k}"
        programs = _programs(rdir)
        prov = provenance.read(rdir).get("rollouts.jsonl") or {}
        ref = functools.partial(_cached_ref, {}, out, prov)  # model_ref of the round's models, each once
        sampled: dict[str, None] = {}  # the round's sampling models, in order (the card's Models table)
        n = 0
        for lineno, d in io.iter_jsonl(rdir / "pairs.jsonl", numbered=True):
            for key in ("prompt", "chosen", "rejected"):
                msgs = d.get(key)
                if not isinstance(msgs, list) or not msgs or not all(
                        isinstance(m, dict) and set(m) == {"role", "content"}
                        and all(isinstance(v, str) for v in m.values()) for m in msgs):
                    raise ValueError(f"export: {rdir / 'pairs.jsonl'}:{lineno}: {key} must be a non-empty list of "
                                     f"{{role, content}} messages (TRL's conversational format)")
            sampled[str((d.get("metadata") or {}).get("model", ""))] = None
            rec = flatten(d, k, programs, ref)
            if rec["pair_id"] in seen:
                info["duplicates"] += 1
                continue
            seen.add(rec["pair_id"])
            records.append(rec)
            n += 1
        info["per_round"][k] = n
        info["models"] += [{"round": k, "model": ident, "fingerprint": fp}
                           for ident, fp in dict.fromkeys(ref(m) for m in sampled)]
        if prov.get("verifier"):
            info["verifiers"][k] = prov["verifier"]
        filters = (io.read_json(rdir / "filters.json") if (rdir / "filters.json").exists() else {}) or {}
        info["filters"][k] = {name: c for name, c in filters.items()
                              if isinstance(c, dict) and not name.endswith(("_info", "_precision"))}
        steps = {name: filters[name] for name in ("steps", "steps_info", "format_info") if filters.get(name)}
        if steps:
            info["steps"][k] = steps
        cross = {name: filters[name] for name in ("crosscheck", "crosscheck_info", "pseudo_label_precision")
                 if isinstance(filters.get(name), dict) and filters[name]}
        if cross:
            info["crosscheck"][k] = cross
    if not records:
        raise ValueError(f"export: rounds {', '.join(map(str, rounds))} of {out} hold no pairs")
    return records, info


def _features() -> Any:
    from datasets import Features, List, Value

    msg = List({"role": Value("string"), "content": Value("string")})
    return Features({c: msg if t == "messages" else Value(t) for c, (t, _) in COLUMNS.items()})


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


def _dataset(records: list[dict[str, Any]], features: Any) -> Any:
    """The records as a `datasets.Dataset` of the declared features, both formats are written from (the
    same values in both: int32, a string gold); a value that does not fit is one line, before any write."""
    import datasets

    try:
        with _no_progress_bars():
            return datasets.Dataset.from_list(records, features=features)
    except (ValueError, TypeError) as e:  # pyarrow's ArrowInvalid / ArrowTypeError are these
        raise ValueError(f"export: a pair's metadata does not fit the export's columns "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _write_data(path: Path, ds: Any, fmt: str) -> None:
    if fmt == "parquet":
        with _no_progress_bars():
            ds.to_parquet(str(path))
    else:  # orjson, not to_json (pandas, which rounds floats to 10 digits)
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ds))


def check_target(out: Path, to: Path, force: bool) -> None:
    """Refuse, before anything is written: a DIR that is a file, inside the run or holding it, or
    not empty without --force."""
    o, t = out.resolve(), to.resolve()
    if o.is_relative_to(t) or any(t.is_relative_to(d.resolve()) for d in round_dirs(out).values()):
        raise ValueError(f"export: --to {to} is the run {out}, holds it or lies inside one of its rounds; "
                         f"give another directory")
    if to.exists() and not to.is_dir():
        raise ValueError(f"export: --to {to} is a file")
    if to.is_dir() and any(to.iterdir()) and not force:
        raise ValueError(f"export: --to {to} is not empty; --force replaces it")


def write_export(out: str | Path, to: str | Path, *, rounds: str | None = None, fmt: str = "parquet",
                 force: bool = False, license: str = "apache-2.0", name: str | None = None) -> dict[str, Any]:
    """Export the pairs of `rounds` of run OUT to DIR (see the module doc); returns a summary."""
    out, to = Path(out), Path(to)
    if not out.is_dir():
        raise ValueError(f"export: {out} is not a directory")
    if fmt not in FORMATS:
        raise ValueError(f"export: --format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    chosen = parse_rounds(rounds, out)
    check_target(out, to, force)
    records, info = collect(out, chosen)
    # The file is named by its content: datasets caches a local directory by its name and the
    # README's data_files patterns only, so a fixed name would load a stale cache after a re-export.
    digest = hashlib.sha256("".join(r["pair_id"] for r in records).encode() + fmt.encode()).hexdigest()[:12]
    data_path = f"data/train-{digest}.{fmt}"
    name = name or f"selfplay DPO pairs: {out.resolve().name}"
    features = _features()
    ds = _dataset(records, features)
    card = card_text(out, records, info, license=license, data_path=data_path, name=name, features=features)
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{to.name}.tmp-", dir=to.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the export is an ordinary directory
    try:
        (tmp / "data").mkdir()
        _write_data(tmp / data_path, ds, fmt)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        old = to.with_name(f".{to.name}.old-{os.getpid()}")
        if to.exists():
            os.replace(to, old)  # an empty DIR, or a non-empty one with --force
        os.replace(tmp, to)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after the rename; a failure leaves nothing
    return {"dir": str(to), "data": data_path, "pairs": len(records), "rounds": chosen,
            "duplicates": info["duplicates"], "format": fmt, "per_round": info["per_round"]}


def check_push(repo: str) -> str:
    """Before anything is written: a valid repo id and a token (one line each, no traceback)."""
    from huggingface_hub import get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        raise ValueError(f"export: --push-to-hub {repo}: {str(e).splitlines()[0]}") from None
    token = get_token()
    if not token:
        raise RuntimeError("export: --push-to-hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    return token


def push_to_hub(to: str | Path, repo: str, token: str, *, private: bool = False) -> str:
    """Create the dataset repo (if needed) and upload DIR with huggingface_hub; returns its URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    later = f"the export is complete in {to}; upload it later with `hf upload {repo} {to} --repo-type dataset`"
    try:
        api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(to), repo_id=repo, repo_type="dataset",
                          commit_message=f"selfplay export ({__version__})")
    except HfHubHTTPError as e:
        raise RuntimeError(f"export: the hub refused {repo}: {str(e).splitlines()[0]}; {later}") from None
    except _hub_transport_errors() as e:
        raise RuntimeError(f"export: the hub is not reachable ({type(e).__name__}); {later}") from None
    return f"https://huggingface.co/datasets/{repo}"
