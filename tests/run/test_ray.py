"""The Ray executor (selfplay/run/executor.py, selfplay/run/ray_executor.py) on a real two-node Ray
cluster on this machine (ray.cluster_utils.Cluster: a head and a second node, one CPU each).

1. A round with --executor ray and two workers on the hf backend (the real model, fp32) leaves the
   same files as the local executor's round: problems, rollouts (timing fields aside), pairs.
2. A worker killed mid-shard (SIGKILL to the actor's pid) is replaced and its shard re-queued;
   then the driver itself is killed, and the rerun solves only the unfinished shards. The files
   equal the uninterrupted local run's: nothing lost, nothing twice.
3. A problem that raises on its worker is recorded as its k paths with the error text, counted
   (verdict_reasons.error), and the job finishes.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

ray = pytest.importorskip("ray", reason="ray not installed (scripts/setup.sh installs it)")

from tests.conftest import needs_bwrap  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TIMING_FIELDS = {"verify_seconds", "seconds"}

HF = """
[run]
seed = 7
out = "{out}"
[model]
backend = "hf"
batch_size = 4
[seeds]
problems = 5
[pose]
attempts = 2
max_new_tokens = 40
[solve]
samples = 4
max_new_tokens = 32
batch_problems = 1
[train]
enabled = false
[eval]
enabled = false
"""

SCRIPTED = """
[run]
seed = 5
out = "{out}"
[model]
backend = "scripted"
[seeds]
problems = 6
[pose]
attempts = 0
[solve]
samples = 4
batch_problems = 2
[train]
enabled = false
[eval]
enabled = false
"""


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second node, one CPU each; the tests' drivers join it by address."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 << 20})
    c.add_node(num_cpus=1, object_store_memory=100 << 20)
    c.wait_for_nodes()
    yield c.address
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def local_hf(tmp_path_factory) -> Path:
    """The local executor's round on the hf backend: what every Ray run must reproduce."""
    cfg, out = _cfg(tmp_path_factory.mktemp("local"), "local", HF)
    _run(cfg)
    return out


def _cfg(tmp_path: Path, name: str, text: str, **kw) -> tuple[Path, Path]:
    out = tmp_path / name
    f = tmp_path / f"{name}.toml"
    f.write_text(text.format(out=out, **kw))
    return f, out


def _cmd(cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "selfplay", "run", "--config", str(cfg), *extra]


def _env(**extra: str) -> dict[str, str]:
    # one torch thread in every generation process: the local run's and each Ray worker's (Ray
    # gives an actor with num_cpus=1 one OpenMP thread), so the hf backend computes the same bits
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env.pop("SELFPLAY_KILL_AT", None)
    env.pop("RAY_ADDRESS", None)
    return env


def _run(cfg: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(_cmd(cfg, *extra), cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in TIMING_FIELDS}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _lines(path: Path) -> list[bytes]:
    """A JSONL file's records, timing fields removed, re-serialised and sorted."""
    return sorted(orjson.dumps(_strip(orjson.loads(ln)), option=orjson.OPT_SORT_KEYS)
                  for ln in path.read_bytes().splitlines() if ln.strip())


def _same_round(a: Path, b: Path) -> None:
    for name in ("problems.jsonl", "rollouts.jsonl", "pairs.jsonl"):
        assert _lines(a / "round_0" / name) == _lines(b / "round_0" / name), f"{name} differs"
    # pairs.jsonl byte for byte (sorted lines): no timing field in a pair
    assert sorted((a / "round_0" / "pairs.jsonl").read_bytes().splitlines()) == \
        sorted((b / "round_0" / "pairs.jsonl").read_bytes().splitlines())
    for name in ("filters.json", "pose.json"):
        assert _strip(orjson.loads((a / "round_0" / name).read_bytes())) == \
            _strip(orjson.loads((b / "round_0" / name).read_bytes())), f"{name} differs"


@pytest.mark.model
@needs_bwrap
def test_ray_round_on_two_workers_equals_the_local_round(tmp_path, cluster, local_hf):
    local = local_hf
    rcfg, ray_out = _cfg(tmp_path, "ray", HF)
    r = _run(rcfg, "--executor", "ray", "--ray-address", cluster, "--workers", "2")
    assert "over 2 worker(s)" in r.stderr and "solved by 2 worker process(es)" in r.stderr, r.stderr[-3000:]
    _same_round(local, ray_out)
    rows = _lines(ray_out / "round_0" / "rollouts.jsonl")
    n_problems = len((ray_out / "round_0" / "problems.jsonl").read_bytes().splitlines())
    assert len(rows) == 4 * n_problems and len(set(rows)) == len(rows)
    assert not (ray_out / "round_0" / "shards").exists()  # merged into rollouts.jsonl, then removed
    # the executor changes no data, so a ray run may be resumed locally (and the reverse)
    assert "round 0 complete, skipped" in _run(rcfg, "--executor", "local").stdout


def _named_workers(driver_pid: int) -> list:
    prefix = f"selfplay-{driver_pid}-w"
    return [ray.get_actor(a["name"], namespace=a["namespace"]) for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(prefix)]


def _kill_a_busy_worker(driver: subprocess.Popen, deadline: float) -> int:
    """SIGKILL the process of a worker that is in the middle of a shard; its pid."""
    while time.time() < deadline:
        assert driver.poll() is None, "the run ended before a worker could be killed"
        for actor in _named_workers(driver.pid):
            try:
                info = ray.get(actor.info.remote(), timeout=10)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                continue  # still starting, or gone
            if info["busy"]:
                os.kill(info["pid"], signal.SIGKILL)
                return info["pid"]
        time.sleep(0.2)
    raise AssertionError("no worker was busy with a shard in time")


@pytest.mark.model
@needs_bwrap
def test_killed_worker_is_replaced_and_a_killed_run_resumes_only_unfinished_shards(tmp_path, cluster, local_hf):
    local = local_hf
    rcfg, out = _cfg(tmp_path, "ray", HF)
    ray.init(address=cluster, namespace="selfplay-test", log_to_driver=False)
    log = tmp_path / "first.log"
    # the driver SIGKILLs itself right after marking its 2nd shard done, before handing that shard
    # to rollouts.jsonl: at least one finished shard exists only in the shards folder
    env = _env()
    env["SELFPLAY_KILL_AT"] = "ray:shard_done:2"
    with open(log, "w") as f:
        driver = subprocess.Popen(_cmd(rcfg, "--executor", "ray", "--ray-address", cluster, "--workers", "2"),
                                  cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        try:
            _kill_a_busy_worker(driver, time.time() + 600)
            driver.wait(600)
        finally:
            if driver.poll() is None:
                driver.kill()
    first = log.read_text()
    assert driver.returncode == -signal.SIGKILL, first[-3000:]
    assert "died during" in first and "re-queued" in first, first[-3000:]
    done = list((out / "round_0" / "shards").glob("*/*.done"))
    assert len(done) == 2, first[-3000:]
    r = _run(rcfg, "--executor", "ray", "--ray-address", cluster, "--workers", "2")
    reused = [ln for ln in r.stderr.splitlines() if "already done in" in ln]
    assert reused and "; 0 already done" not in reused[-1], r.stderr[-3000:]
    _same_round(local, out)
    rollouts = [orjson.loads(ln) for ln in (out / "round_0" / "rollouts.jsonl").read_bytes().splitlines()]
    keys = [(x["problem_id"], x["sample_index"]) for x in rollouts]
    n_problems = len((out / "round_0" / "problems.jsonl").read_bytes().splitlines())
    assert len(keys) == len(set(keys)) == n_problems * 4  # nothing lost, nothing twice


@needs_bwrap
def test_a_failing_problem_is_recorded_with_its_error_and_the_job_finishes(tmp_path, cluster):
    cfg, local = _cfg(tmp_path, "local", SCRIPTED)
    _run(cfg)
    problems = [orjson.loads(ln) for ln in (local / "round_0" / "problems.jsonl").read_bytes().splitlines()]
    bad = problems[3]["id"]  # in the second shard of two problems, beside a good one
    rcfg, out = _cfg(tmp_path, "ray", SCRIPTED)
    r = _run(rcfg, "--executor", "ray", "--ray-address", cluster, "--workers", "2",
             env=_env(SELFPLAY_FAIL_PROBLEMS=bad))
    assert f"ERROR in problem {bad}" in r.stderr and "1 problem(s) failed" in r.stderr, r.stderr[-3000:]
    rows = [orjson.loads(ln) for ln in (out / "round_0" / "rollouts.jsonl").read_bytes().splitlines()]
    failed = [x for x in rows if x["problem_id"] == bad]
    assert len(failed) == 4 and all(x["label"] == "unknown" and x["reason"] == "error" and x["finish_reason"] == "error"
                                    and "failed on purpose" in x["error"] for x in failed)
    good = [x for x in rows if x["problem_id"] != bad]
    ref = [x for x in (orjson.loads(ln) for ln in (local / "round_0" / "rollouts.jsonl").read_bytes().splitlines())
           if x["problem_id"] != bad]
    assert _strip(good) == _strip(ref) and all("error" not in x for x in good)
    stats = orjson.loads((out / "round_0" / "stats.json").read_bytes())
    assert stats["verdict_reasons"]["error"] == 4 and stats["finish_reasons"]["error"] == 4
    pairs = [orjson.loads(ln) for ln in (out / "round_0" / "pairs.jsonl").read_bytes().splitlines()]
    assert pairs and bad not in {p["metadata"]["problem_id"] for p in pairs}


def test_config_refuses_ray_settings_without_the_ray_executor():
    from selfplay.config import load_config

    with pytest.raises(ValueError, match="run.ray_address: is only used with"):
        load_config(None, {"run.ray_address": "auto"})
    with pytest.raises(ValueError, match="run.executor: must be one of local, ray"):
        load_config(None, {"run.executor": "dask"})
    assert load_config(None, {"run.executor": "ray", "run.workers": 2}).run.workers == 2


def test_shard_size_is_the_local_batch():
    from selfplay.run.ray_executor import batch_size

    assert batch_size({"rows_per_call": 64}, 0, 8, 1) == 8  # hf: batch_size rows / samples
    assert batch_size({"rows_per_call": 64}, 0, 8, 2) == 4  # mixed: two kinds of path per problem
    assert batch_size({"rows_per_call": 64}, 3, 8, 1) == 3  # solve.batch_problems wins


@pytest.mark.gpu
@pytest.mark.vllm
def test_one_vllm_engine_per_gpu(tmp_path):
    """Data parallel generation: one Ray worker (one vLLM engine) per GPU of the machine."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("vllm")
    gpus = torch.cuda.device_count()
    cfg, out = _cfg(tmp_path, "gpu", HF.replace('backend = "hf"', 'backend = "vllm"'))
    r = _run(cfg, "--executor", "ray")  # a private Ray instance sees every GPU
    import re

    started = [int(n) for n in re.findall(r"starting (\d+) worker\(s\) \(1 CPU, 1 GPU each\)", r.stderr)]
    assert started and all(1 <= n <= gpus for n in started), r.stderr[-3000:]
    rows = _lines(out / "round_0" / "rollouts.jsonl")
    n_problems = len((out / "round_0" / "problems.jsonl").read_bytes().splitlines())
    assert len(rows) == 4 * n_problems
