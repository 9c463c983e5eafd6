"""Seed problems: procedural generators with difficulty levels, JSONL files, HF datasets.

Every procedural item is reproducible from (seed, generator, level, index); file and dataset
loaders map records to `selfplay.records.Problem` with origin "file" / "hf".
"""
from seeds.procedural import GENERATORS, generate, procedural_problems
from seeds.loaders import load_hf_dataset, load_jsonl_problems

__all__ = ["GENERATORS", "generate", "procedural_problems", "load_jsonl_problems", "load_hf_dataset"]
