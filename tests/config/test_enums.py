"""Every name-valued config field's names are defined once (selfplay/config/enums.py); each
registry that implements them must hold exactly those names, so a config that validates always
finds its implementation and no implementation is unreachable from a config."""
from selfplay.backends import BACKENDS
from selfplay.config.enums import BackendName, Executor, PoseKind, Precision, SolveMode, TrainOn, Witness, names
from selfplay.pair.mixing import TRAIN_ON
from selfplay.pose.witness import WITNESSES
from selfplay.prompts import POSE_KINDS, SOLVE_MODES
from selfplay.run.executor import EXECUTORS
from selfplay.train.precision import PRECISIONS


def test_registries_hold_exactly_the_config_names():
    assert set(BACKENDS) == set(names(BackendName))
    assert tuple(EXECUTORS) == names(Executor)
    assert set(POSE_KINDS) == set(names(PoseKind))
    assert tuple(WITNESSES) == names(Witness)
    assert tuple(TRAIN_ON) == names(TrainOn)
    assert tuple(PRECISIONS) == names(Precision)
    assert set(SOLVE_MODES) | {"mixed"} == set(names(SolveMode))  # mixed samples both kinds


def test_a_name_outside_the_enum_is_refused_with_its_field():
    import pytest

    from selfplay.config import load_config

    for field, value in [("run.executor", "slurm"), ("model.backend", "tgi"), ("pose.witness", "judge"),
                         ("guard.train_on", "mixed"), ("train.precision", "fp8"), ("train.launcher", "torchrun"),
                         ("pair.flawed_chosen", "keep")]:
        with pytest.raises(ValueError, match=f"config: {field}: "):
            load_config(None, {field: value})
