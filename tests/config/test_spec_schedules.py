"""``schedules:`` and ``triggers:`` in ``wellml.yaml``: validated line by line when read."""

from __future__ import annotations

from typing import Any

import pytest

from wellml.config import ScheduleSpec, TriggerSpec, dump_spec, parse_spec
from wellml.errors import InvalidInput

FN = "tests.pipelines.sample_steps:on_data"


def _spec(**sections: Any) -> dict[str, Any]:
    return {"name": "p", "pipelines": {"nightly": FN}, **sections}


def test_schedules_and_triggers_are_read_with_their_defaults() -> None:
    spec = parse_spec(
        _spec(
            schedules={
                "nightly-3am": {"pipeline": "nightly", "cron": "0 3 * * *", "params": {"a": 1}},
                "by-ref": {"pipeline": FN, "cron": "*/15 * * * *", "executor": "ray://h:10001"},
            },
            triggers={"on-events": {"pipeline": "nightly", "dataset": "events"}},
        )
    )
    assert spec.schedules["nightly-3am"] == ScheduleSpec(
        pipeline="nightly", cron="0 3 * * *", params={"a": 1}, executor="local"
    )
    assert spec.schedules["by-ref"].executor == "ray://h:10001"
    assert spec.triggers["on-events"] == TriggerSpec(
        pipeline="nightly", kind="dataset", dataset="events", dataset_param=None
    )
    # A round trip through YAML keeps them.
    import yaml

    assert parse_spec(yaml.safe_load(dump_spec(spec))) == spec


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"schedules": {"s": {"pipeline": "nightly", "cron": "every day"}}},
            r"schedules\.s\.cron: .*invalid cron expression 'every day'",
        ),
        (
            {"schedules": {"s": {"pipeline": "nightly", "cron": "0 3 * * * *"}}},
            r"schedules\.s\.cron: .*five fields",
        ),
        (
            {"schedules": {"s": {"pipeline": "weekly", "cron": "0 3 * * *"}}},
            r"schedules: .*s: unknown pipeline 'weekly': .*\(nightly\) or give module:function",
        ),
        (
            {"triggers": {"t": {"pipeline": "nope", "dataset": "events"}}},
            r"triggers: .*t: unknown pipeline 'nope'",
        ),
        (
            {"triggers": {"t": {"pipeline": "nightly", "kind": "drift", "dataset": "d"}}},
            r"triggers\.t\.kind: .*unknown trigger kind 'drift': use dataset",
        ),
        (
            {"triggers": {"t": {"pipeline": "nightly"}}},
            r"triggers\.t\.dataset: Field required",
        ),
        (
            {"triggers": {"t": {"pipeline": "nightly", "dataset": "bad name"}}},
            r"triggers\.t\.dataset: .*invalid dataset name",
        ),
        (
            {"schedules": {"s": {"pipeline": "nightly", "cron": "0 3 * * *", "exec": "x"}}},
            r"schedules\.s\.exec: Extra inputs are not permitted",
        ),
        (
            {"schedules": {"s": {"pipeline": "nightly", "cron": "0 3 * * *", "executor": "gpu"}}},
            r"schedules\.s\.executor: .*unknown executor 'gpu'",
        ),
        (
            {"schedules": {"bad name": {"pipeline": "nightly", "cron": "0 3 * * *"}}},
            r"invalid schedule name 'bad name'",
        ),
        (
            {
                "schedules": {"x": {"pipeline": "nightly", "cron": "0 3 * * *"}},
                "triggers": {"x": {"pipeline": "nightly", "dataset": "events"}},
            },
            r"triggers: .*x: a schedule and a trigger cannot share a name",
        ),
        ({"schedules": ["nightly"]}, r"schedules: .*valid dictionary"),
        (
            {"schedules": {"s": {"pipeline": "nightly", "cron": 5}}},
            r"schedules\.s\.cron: .*valid string",
        ),
    ],
)
def test_bad_schedules_and_triggers_are_refused_naming_the_field(
    sections: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_spec(_spec(**sections), source="wellml.yaml")
