"""Quality rules: exact failing counts, clear messages, and refusal of malformed specs."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from wellml.data.quality import evaluate, parse_rules

TABLE = pa.Table.from_pandas(
    pd.DataFrame(
        {
            "id": [1, 2, 2, 4],
            "age": [10.0, -1.0, 250.0, None],
            "plan": ["a", "b", "z", None],
            "region": ["n", "n", "s", "s"],
        }
    ),
    preserve_index=False,
)


def _one(spec: dict) -> object:  # type: ignore[type-arg]
    return evaluate(TABLE, parse_rules([spec])).results[0]


def test_not_null_counts_missing_values() -> None:
    r = _one({"rule": "not_null", "column": "age"})
    assert (r.passed, r.failing_rows) == (False, 1)  # type: ignore[attr-defined]
    assert r.message == "age: 1 of 4 rows (25.00%) are missing"  # type: ignore[attr-defined]
    assert _one({"rule": "not_null", "column": "id"}).passed  # type: ignore[attr-defined]


def test_range_reports_values_outside_with_examples() -> None:
    r = _one({"rule": "range", "column": "age", "min": 0, "max": 120})
    assert r.failing_rows == 2  # type: ignore[attr-defined]
    assert r.message == (
        "age: 2 of 4 rows (50.00%) are outside [0, 120]; "  # type: ignore[attr-defined]
        "e.g. -1.0, 250.0"
    )
    wrong_type = _one({"rule": "range", "column": "plan", "min": 0})
    assert not wrong_type.passed and "not numeric" in wrong_type.message  # type: ignore[attr-defined]


def test_allowed_values_ignore_missing() -> None:
    r = _one({"rule": "allowed_values", "column": "plan", "values": ["a", "b"]})
    assert (r.failing_rows, r.sample_failures) == (1, ("z",))  # type: ignore[attr-defined]


def test_uniqueness_of_one_and_several_columns() -> None:
    assert _one({"rule": "unique", "columns": ["id"]}).failing_rows == 2  # type: ignore[attr-defined]
    assert _one({"rule": "unique", "columns": ["id", "region"]}).passed  # type: ignore[attr-defined]


def test_missing_column_fails_the_rule() -> None:
    r = _one({"rule": "not_null", "column": "nope"})
    assert not r.passed and r.message == "column 'nope' is missing"  # type: ignore[attr-defined]


def test_warnings_do_not_fail_the_report() -> None:
    report = evaluate(
        TABLE,
        parse_rules(
            [
                {"rule": "not_null", "column": "age", "severity": "warning"},
                {"rule": "unique", "columns": ["region", "plan"], "severity": "critical"},
            ]
        ),
    )
    assert report.passed
    assert not evaluate(TABLE, parse_rules([{"rule": "not_null", "column": "age"}])).passed
    assert report.to_dict()["results"][0]["failing_fraction"] == 0.25


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"rule": "nope"}, "rule 1: unknown rule"),
        ({"rule": "range", "min": 0}, "missing column"),
        ({"rule": "range", "column": "age"}, "give min, max or both"),
        ({"rule": "range", "column": "age", "min": "zero"}, "min must be a number"),
        ({"rule": "allowed_values", "column": "plan", "values": []}, "non-empty list"),
        ({"rule": "not_null", "column": "age", "severity": "fatal"}, "severity"),
        ({"rule": "not_null", "column": "age", "colour": 1}, "unknown field"),
        ("not a mapping", "expected a mapping"),
    ],
)
def test_malformed_rules_are_refused(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rules([spec])  # type: ignore[list-item]
