"""Record names and run keys: one rule each, in ``wellml.names``, used everywhere."""

from __future__ import annotations

import pytest

from wellml.config import parse_spec
from wellml.errors import InvalidInput
from wellml.names import KEY_PATTERN, NAME_PATTERN, check_key, check_name
from wellml.workspace import Workspace


@pytest.mark.parametrize("key", ["auc", "val_roc_auc", "space.model__C", "a/b:c d-e", "x" * 250])
def test_valid_run_keys_pass(key: str) -> None:
    assert check_key(key, "metric") == key and KEY_PATTERN.match(key)


@pytest.mark.parametrize("key", ["", "x" * 251, "auc!", "é", "new\nline", 3, None])
def test_invalid_run_keys_are_refused_naming_what_they_are(key: object) -> None:
    with pytest.raises(InvalidInput, match=r"invalid metric key .*1-250 letters"):
        check_key(key, "metric")  # type: ignore[arg-type]


def test_the_spec_uses_the_record_name_rule() -> None:
    long = "p" * 129
    assert not NAME_PATTERN.match(long)
    with pytest.raises(InvalidInput):
        check_name(long)
    for section in (
        {"name": long},
        {"name": "p", "stages": [long]},
        {"name": "p", "pipelines": {long: "m:f"}},
        {"name": "p", "pipelines": {"_x": "m:f"}},
    ):
        with pytest.raises(InvalidInput):
            parse_spec(section)
    assert parse_spec({"name": "p" * 128, "stages": ["dev.1"]}).stages[0].name == "dev.1"


def test_tracking_and_tuning_refuse_the_same_keys(workspace: Workspace) -> None:
    with workspace.tracking.start_run("e") as run, pytest.raises(InvalidInput, match="metric key"):
        run.log_metric("bad!", 1.0)
    with pytest.raises(InvalidInput, match="invalid search space parameter key 'x!'"):
        workspace.tuning.tune(lambda p: 1.0, {"x!": (0.0, 1.0)}, direction="maximize", n_trials=1)
