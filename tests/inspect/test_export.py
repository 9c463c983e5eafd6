"""`selfplay export`: a two-round run as a Hub dataset. It loads with datasets.load_dataset, its card
parses with huggingface_hub.DatasetCard.load and has the fields, DPOTrainer trains on it as it is,
and bad input is refused in one line with nothing half-written."""
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from selfplay.backends.models import resolve_model
from selfplay.cli.main import main
from selfplay.config import load_config
from selfplay.core import io
from selfplay.inspect import export
from selfplay.inspect.export import EMBEDDED_HUB_ID, model_ref, pair_id, write_export
from selfplay.inspect.export_card import DATASET_PLACEHOLDER
from selfplay.run.loop import run_loop
from tests.conftest import needs_bwrap, one_line_error

ROOT = Path(__file__).resolve().parents[2]
TOML = """
[run]
seed = 5
rounds = 2
out = "{out}"
[model]
backend = "scripted"
name = "scripted-model"
[seeds]
problems = 6
[pose]
attempts = 3
witness = "program"  # "auto" would also ask the solver majority for these word problems (few pairs)
[solve]
samples = 4
[train]
enabled = false
[eval]
enabled = false
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-round scripted run with posed problems (programs run in the bubblewrap sandbox)."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap not installed")
    tmp = tmp_path_factory.mktemp("export")
    f = tmp / "c.toml"
    f.write_text(TOML.format(out=tmp / "run"))
    run_loop(load_config(f))
    return tmp / "run"


def sp(*args, env=None):
    return subprocess.run([sys.executable, "-m", "selfplay", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def _pairs(run, k):
    return [orjson.loads(x) for x in (run / f"round_{k}" / "pairs.jsonl").read_bytes().splitlines() if x.strip()]


def _load(path):
    from datasets import load_dataset

    return load_dataset(str(path), split="train", cache_dir=str(path.parent / ".datasets-cache"))


@needs_bwrap
def test_export_loads_with_datasets_and_keeps_trl_format(run, tmp_path):
    r = sp("export", run, "--to", tmp_path / "ds")
    assert r.returncode == 0, r.stderr[-2000:]
    pairs = {0: _pairs(run, 0), 1: _pairs(run, 1)}
    n = len(pairs[0]) + len(pairs[1])
    assert f"exported {n} pairs of rounds 0, 1" in r.stdout
    assert f"INFO exported {n} pairs of rounds 0, 1" in (run / "run.log").read_text()  # logged in the run
    ds = _load(tmp_path / "ds")
    assert len(ds) == n and len(set(ds["pair_id"])) == n
    programs = {p["id"]: p["program"] for k in (0, 1) for p in io.iter_jsonl(run / f"round_{k}" / "problems.jsonl")
                if p["origin"] == "posed"}
    assert programs, "the run posed no problem: nothing checks the program column"
    by_id = {row["pair_id"]: row for row in ds}
    for k, ps in pairs.items():
        for p in ps:
            row = by_id[pair_id(p["prompt"], p["chosen"], p["rejected"])]
            assert (row["prompt"], row["chosen"], row["rejected"]) == (p["prompt"], p["chosen"], p["rejected"])
            md = p["metadata"]
            assert row["round"] == k and row["problem_id"] == f"r{k}/{md['problem_id']}" and row["gold"] == md["gold"]
            assert row["chosen_extracted"] == md["chosen_extracted"] and row["pass_rate"] == md["pass_rate"]
            assert row["mode"] == md.get("mode", "cot") and row["origin"] == md["origin"]
            assert row["program"] == (programs[md["problem_id"]] if md["origin"] == "posed" else None)
            assert row["model"] == "scripted-model" and row["sampling_n"] == 4
    assert any(row["program"] for row in ds)
    assert not any(str(v).startswith("/") for row in ds for v in row.values() if isinstance(v, str))
    assert not list(tmp_path.glob(".ds.*"))  # no temporary directory left beside it


@needs_bwrap
def test_card_parses_and_has_the_fields(run, tmp_path):
    from huggingface_hub import DatasetCard

    write_export(run, tmp_path / "ds", license="mit")
    card = DatasetCard.load(tmp_path / "ds" / "README.md")
    d = card.data.to_dict()
    n = len(_pairs(run, 0)) + len(_pairs(run, 1))
    assert d["license"] == "mit" and d["size_categories"] == ["n<1K"]
    data = [p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds" / "data").iterdir()]
    assert len(data) == 1 and data[0].endswith(".parquet")
    assert d["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": data[0]}]}]
    meta = d["selfplay"]
    assert meta["rounds"] == [0, 1] and meta["pairs"] == n and meta["duplicates_dropped"] == 0
    assert meta["models"] == [{"round": 0, "model": "scripted-model", "fingerprint": None},
                              {"round": 1, "model": "scripted-model", "fingerprint": None}]
    versions = io.read_json(run / "config.json")["versions"]
    assert meta["verifier"]["run"] == versions["verifier"] and meta["verifier"]["versions"]["sympy"]
    filters = io.read_json(run / "round_0" / "filters.json")
    assert meta["filters"]["0"]["hygiene"] == filters["hygiene"]  # the drop counts, as the run counted them
    assert meta["label_crosscheck"]["0"]["pseudo_label_precision"] == filters["pseudo_label_precision"]
    # the chosen step check and \boxed{} adherence, as the run counted them
    assert meta["step_check"]["0"]["steps_info"] == filters["steps_info"]
    assert meta["step_check"]["1"]["format_info"] == io.read_json(run / "round_1" / "filters.json")["format_info"]
    text = card.text
    for needle in ("from datasets import load_dataset", "DPOTrainer(", "## Fields", "## Filters (drops by reason)",
                   "## Chosen paths: right all the way", "## Label cross-check", "## License", "`program`",
                   "`first_error`", "`granularity`"):
        assert needle in text, needle


@needs_bwrap
def test_rounds_subset_jsonl_and_duplicates_kept_once(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    first = (copy / "round_0" / "pairs.jsonl").read_bytes().splitlines(keepends=True)[0]
    with open(copy / "round_1" / "pairs.jsonl", "ab") as f:  # the same pair found again in round 1
        f.write(first)
    r = write_export(copy, tmp_path / "all", fmt="jsonl")
    assert r["duplicates"] == 1 and r["pairs"] == len(_pairs(run, 0)) + len(_pairs(run, 1))
    ds = _load(tmp_path / "all")
    assert len(ds) == r["pairs"] and len(set(ds["pair_id"])) == len(ds)
    one = write_export(copy, tmp_path / "r1", rounds="1", fmt="jsonl")
    assert one["rounds"] == [1] and set(_load(tmp_path / "r1")["round"]) == {1}
    assert (tmp_path / "r1" / one["data"]).exists() and one["data"].endswith(".jsonl")
    # the same directory name again with other content: not datasets' stale cache of the first
    again = write_export(copy, tmp_path / "r1", rounds="0", fmt="jsonl", force=True)
    assert set(_load(tmp_path / "r1")["round"]) == {0} and again["data"] != one["data"]


def test_model_identifiers_mean_something_elsewhere(tmp_path):
    out = tmp_path / "run"
    model_dir = out / "round_0" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    (model_dir / "model.safetensors").write_bytes(b"weights")
    ident, fp = model_ref(str(model_dir.resolve()), out)  # recorded as an absolute path
    assert ident == "round_0/model" and len(fp) == 16
    assert model_ref("runs/elsewhere/round_0/model", out)[0] == "round_0/model"  # relative to another cwd
    assert model_ref("runs/x/round_3/model", out, {"model": "runs/x/round_3/model", "model_fingerprint": "ab" * 8}) \
        == ("round_3/model", "ab" * 8)  # gone since: the fingerprint taken when the round ran
    assert model_ref("/home/me/.cache/selfplay/models/SmolLM2-135M-Instruct", out)[0] == EMBEDDED_HUB_ID
    assert model_ref("default", out)[0] == EMBEDDED_HUB_ID
    assert model_ref("Qwen/Qwen2.5-0.5B-Instruct", out) == ("Qwen/Qwen2.5-0.5B-Instruct", None)
    other = tmp_path / "my-model"
    other.mkdir()
    (other / "config.json").write_text("{}")
    ident, fp = model_ref(str(other), out)
    assert ident == "local:my-model" and fp and not ident.startswith("/")
    # gone, relative to the run's working directory: no hub id has two slashes
    assert model_ref("models/gone/my-model", out) == ("local:my-model", None)
    assert model_ref("", out) == ("", None)  # none recorded: not the fingerprint of the cwd


@needs_bwrap
def test_refusals_are_one_line_and_leave_nothing(run, tmp_path):
    target = tmp_path / "ds"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    one_line_error(sp("export", run, "--to", target), "is not empty", "--force")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    one_line_error(sp("export", run, "--to", run), "is the run")
    one_line_error(sp("export", run, "--to", run / "round_0" / "x"), "inside one of its rounds")
    one_line_error(sp("export", run, "--to", tmp_path / "n", "--rounds", "0,7"), "round_7/pairs.jsonl not found")
    one_line_error(sp("export", run, "--to", tmp_path / "n", "--rounds", "one"), "--rounds")
    one_line_error(sp("export", tmp_path / "nope", "--to", tmp_path / "n"), "is not a directory")
    assert not (tmp_path / "n").exists()
    r = sp("export", run, "--to", target, "--force")
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "data"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary or old copy left


@needs_bwrap
def test_a_failure_while_writing_leaves_no_export(run, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_write_data", broken)  # fails after the temp dir was made
    with pytest.raises(OSError, match="No space"):
        write_export(run, tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


@needs_bwrap
def test_push_to_hub_uploads_the_export(run, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo",
                        lambda self, repo, **kw: calls.append(("create", repo, kw["repo_type"], kw["private"])))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                        lambda self, **kw: calls.append(("upload", kw["repo_id"], kw["repo_type"],
                                                         sorted(os.listdir(kw["folder_path"])))))
    assert main(["export", str(run), "--to", str(tmp_path / "ds"), "--push-to-hub", "me/selfplay-dpo",
                 "--private"]) == 0
    assert calls == [("create", "me/selfplay-dpo", "dataset", True),
                     ("upload", "me/selfplay-dpo", "dataset", ["README.md", "data"])]


@needs_bwrap
def test_push_without_token_or_network_is_one_line(run, tmp_path):
    no_token = {"HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf")}  # no token in the env, none stored
    one_line_error(sp("export", run, "--to", tmp_path / "a", "--push-to-hub", "me/x", env=no_token),
                   "needs a Hugging Face token")
    assert not (tmp_path / "a").exists()  # refused before anything was written
    offline = {"HF_TOKEN": "hf_fake", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    line = one_line_error(sp("export", run, "--to", tmp_path / "b", "--push-to-hub", "me/x", env=offline),
                          "the hub is not reachable")
    assert "hf upload me/x" in line and (tmp_path / "b" / "README.md").exists()


@pytest.mark.model
@needs_bwrap
def test_dpo_trainer_trains_on_the_export_as_it_is(run, tmp_path):
    """The card's snippet, tiny: the exported split goes to DPOTrainer unchanged."""
    from trl import DPOConfig, DPOTrainer

    write_export(run, tmp_path / "ds")
    ds = _load(tmp_path / "ds")
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=1,
                     gradient_accumulation_steps=1, max_length=256, loss_type=["sigmoid", "sft"],
                     loss_weights=[1.0, 1.0], use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                     logging_steps=1)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads on 2 busy cores spin-wait: 52 s for this step, 18 s with 1
    try:
        trainer = DPOTrainer(model=resolve_model("default"), args=args, train_dataset=ds)
        result = trainer.train()
    finally:
        torch.set_num_threads(threads)
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 1 and result.training_loss > 0
    assert logged[0]["logps/chosen"] != logged[0]["logps/rejected"]  # the answers were not truncated away


def test_a_pair_not_in_trl_format_is_refused_with_its_line(tmp_path):
    out = tmp_path / "run"
    good = {"prompt": [{"role": "user", "content": "What is 1 + 1?"}],
            "chosen": [{"role": "assistant", "content": "2"}],
            "rejected": [{"role": "assistant", "content": "3"}], "metadata": {"problem_id": "p", "round": 0}}
    io.write_jsonl(out / "round_0" / "pairs.jsonl", [good, {**good, "chosen": "2"}])
    with pytest.raises(ValueError,
                       match=r"round_0/pairs\.jsonl:2: chosen must be a non-empty list of \{role, content\}"):
        write_export(out, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def _rewrite_pairs(path, change):
    """pairs.jsonl with change(index, metadata) applied to each pair's metadata."""
    pairs = [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]
    for i, p in enumerate(pairs):
        change(i, p["metadata"])
    io.write_jsonl(path, pairs)


@needs_bwrap
def test_nothing_of_this_machine_in_the_export(run, tmp_path):
    """A run as a real one records it: the embedded model by its cache path (home expanded), the model
    round 0 trained by a path relative to the run's working directory or an absolute one, a local copy
    of an HF dataset and a seed file by their absolute paths. None of it reaches a cell or the card."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    cached = str(Path.home() / ".cache" / "selfplay" / "models" / "SmolLM2-135M-Instruct")
    trained = ["runs/default/round_0/model", str(copy.resolve() / "round_0" / "model")]
    hf_copy, seed_file = str(tmp_path / "data" / "gsm8k-copy"), str(tmp_path / "data" / "mine.jsonl")

    def round_0(i, md):
        md["model"] = cached
        if md["origin"] == "posed":
            md["source"] = cached

    def round_1(i, md):
        md["model"] = trained[i % 2]
        if md["origin"] == "posed":
            md["source"] = trained[0]
        elif i == 0:
            md.update(origin="hf", source=hf_copy, problem_id=f"{hf_copy.replace('/', '_')}-7")
        elif i == 2:
            md.update(origin="file", source=seed_file)

    _rewrite_pairs(copy / "round_0" / "pairs.jsonl", round_0)
    _rewrite_pairs(copy / "round_1" / "pairs.jsonl", round_1)
    write_export(copy, tmp_path / "ds")
    rows = list(_load(tmp_path / "ds"))
    card = (tmp_path / "ds" / "README.md").read_text().splitlines()
    needles = {str(copy.resolve()), str(copy), str(tmp_path), os.getcwd(), "/root", "/tmp", ".cache", "runs/default"}
    if len(Path.home().parts) > 1:
        needles.add(str(Path.home()))
    for row in rows:
        for column, value in row.items():
            cell = orjson.dumps(value).decode()
            assert not [n for n in needles if n in cell], (column, cell)
    for line in card:
        assert not [n for n in needles if n in line], line
    posed = {row["round"]: row["source"] for row in rows if row["origin"] == "posed"}
    assert posed == {0: EMBEDDED_HUB_ID, 1: "round_0/model"}  # the posing model, named like `model`
    assert {row["round"]: row["model"] for row in rows} == {0: EMBEDDED_HUB_ID, 1: "round_0/model"}
    hf = [row for row in rows if row["origin"] == "hf"]
    assert [(row["source"], row["problem_id"]) for row in hf] == [("local:gsm8k-copy", "r1/gsm8k-copy-7")]
    assert [row["source"] for row in rows if row["origin"] == "file"] == ["mine.jsonl"]


@needs_bwrap
def test_problem_ids_mean_one_question(run, tmp_path):
    raw = defaultdict(set)
    for k in (0, 1):
        for p in _pairs(run, k):
            raw[p["metadata"]["problem_id"]].add(p["metadata"]["question"])
    assert any(len(qs) > 1 for qs in raw.values()), "the run reuses no id across rounds: nothing is checked"
    write_export(run, tmp_path / "ds")
    exported = defaultdict(set)
    for row in _load(tmp_path / "ds"):
        exported[row["problem_id"]].add(row["question"])
        assert row["problem_id"].startswith(f"r{row['round']}/")
    assert {pid: qs for pid, qs in exported.items() if len(qs) > 1} == {}
    assert len(exported) == sum(len(qs) for qs in raw.values())  # each question of each round kept its own id


@needs_bwrap
def test_jsonl_and_parquet_load_with_the_same_features(run, tmp_path):
    write_export(run, tmp_path / "pq")
    write_export(run, tmp_path / "js", fmt="jsonl")
    pq, js = _load(tmp_path / "pq"), _load(tmp_path / "js")
    assert js.features == pq.features == export._features()  # declared, not guessed from the values
    assert str(js.features["round"].dtype) == "int32" and str(js.features["agreement"].dtype) == "float64"
    assert js.features["first_error"].dtype == "string"  # null in every row, still a string column
    assert list(js) == list(pq)


def test_metadata_that_does_not_fit_a_column_is_one_line(tmp_path):
    out = tmp_path / "run"
    pair = {"prompt": [{"role": "user", "content": "What is 1 + 1?"}],
            "chosen": [{"role": "assistant", "content": "2"}],
            "rejected": [{"role": "assistant", "content": "3"}], "metadata": {"problem_id": "p", "level": "hard"}}
    io.write_jsonl(out / "round_0" / "pairs.jsonl", [pair])
    with pytest.raises(ValueError, match=r"^export: a pair's metadata does not fit the export's columns \(") as e:
        write_export(out, tmp_path / "ds")
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written, not even a temporary dir


# Runs the card's code as a file and reports what its `trainer` did
REPORT = """import runpy, sys
import orjson
ns = runpy.run_path(sys.argv[1], run_name="__main__")
state = ns["trainer"].state
losses = [h["train_loss"] for h in state.log_history if "train_loss" in h]
print("REPORT " + orjson.dumps({"steps": state.global_step, "bf16": ns["args"].bf16, "train_loss": losses}).decode())
"""


@pytest.mark.model
@needs_bwrap
def test_the_cards_trl_snippet_runs_on_a_cpu_as_written(run, tmp_path):
    """The card's own code block, with only the dataset, the model and the length of training put in
    (num_train_epochs=1 -> max_steps=1), runs on a CPU: TRL's bf16 default does not stop it."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    first = (copy / "round_0" / "pairs.jsonl").read_bytes().splitlines(keepends=True)[0]
    (copy / "round_0" / "pairs.jsonl").write_bytes(first)  # one pair: one step of one example
    write_export(copy, tmp_path / "ds", rounds="0")
    blocks = re.findall(r"```python\n(.*?)```", (tmp_path / "ds" / "README.md").read_text(), re.DOTALL)
    assert len(blocks) == 1
    code = blocks[0]
    for old, new in ((f'"{DATASET_PLACEHOLDER}"', repr(str(tmp_path / "ds"))),
                     (f'"{EMBEDDED_HUB_ID}"', repr(str(resolve_model("default")))),
                     ("num_train_epochs=1", "max_steps=1")):
        assert code.count(old) == 1, old
        code = code.replace(old, new)
    (tmp_path / "card.py").write_text(code)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "HF_DATASETS_CACHE": str(tmp_path / ".datasets-cache")}  # 1 thread: 2 on 2 busy cores spin-wait
    try:
        r = subprocess.run([sys.executable, "-c", REPORT, "card.py"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=900, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        shutil.rmtree(tmp_path / "dpo", ignore_errors=True)  # the checkpoint: 1.6 GB with the optimizer state
    report = orjson.loads(r.stdout.split("REPORT ", 1)[1])
    assert report["steps"] == 1 and report["bf16"] is False  # one step, in fp32 on the CPU
    assert len(report["train_loss"]) == 1 and report["train_loss"][0] > 0
