"""Run configuration: the schema (dataclasses, Literal enums), loading from TOML / dicts with
dotted overrides, and the one validator (checks.py: one rule per field, named in its error)."""
from selfplay.config.load import apply_overrides, from_dict, load_config, parse_setting
from selfplay.config.schema import (Config, EvalSection, FiltersConfig, GuardConfig, ModelConfig, PairConfig,
                                    PoseConfig, RunConfig, SandboxSection, SeedsConfig, SolveConfig, TrainSection,
                                    VerifyConfig, VLLMSection)

__all__ = ["Config", "EvalSection", "FiltersConfig", "GuardConfig", "ModelConfig", "PairConfig", "PoseConfig",
           "RunConfig", "SandboxSection", "SeedsConfig", "SolveConfig", "TrainSection", "VerifyConfig",
           "VLLMSection", "apply_overrides", "from_dict", "load_config", "parse_setting"]
