"""Seed problems: procedural generators with difficulty levels, JSONL files, HF datasets, and the
one question normaliser every comparison of questions uses (selfplay_seeds.text.normalize_question).

Every procedural item is reproducible from (seed, generator, level, index); file and dataset
loaders map records to `selfplay.core.records.Problem` with origin "file" / "hf". seeds/ imports only
the leaf modules selfplay.core.records and selfplay.core.rng, never a pipeline stage (tests/seeds/test_seeds.py).
"""
from selfplay_seeds.loaders import (SHIPPED, easy_first_levels, load_hf_dataset, load_jsonl_problems, parse_hf_spec,
                                    seed_file)
from selfplay_seeds.procedural import GENERATORS, generate, procedural_problems
from selfplay_seeds.text import is_word_problem, normalize_question

__all__ = ["GENERATORS", "generate", "procedural_problems", "load_jsonl_problems", "load_hf_dataset",
           "parse_hf_spec", "normalize_question", "is_word_problem", "SHIPPED", "seed_file", "easy_first_levels"]
