"""Profiles: counts, ranges, quantiles, top values, histograms, round trips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from wellml.data.profile import DatasetProfile, diff_profiles, profile_table

FRAME = pd.DataFrame(
    {
        "n": [1.0, 2.0, np.nan, 4.0, 5.0],
        "i": [3, 1, 3, 2, 3],
        "s": ["b", "a", None, "b", "b"],
        "t": pd.to_datetime(
            ["2026-01-01", "2026-01-02", None, "2026-01-04", "2026-01-05"], utc=True
        ),
        "flag": [True, False, True, True, None],
    }
)


def test_numeric_columns() -> None:
    p = profile_table(FRAME).column("n")
    assert (p.logical_type, p.count, p.missing, p.distinct) == ("float", 5, 1, 4)
    assert p.missing_fraction == pytest.approx(0.2)
    assert (p.min, p.max) == (1.0, 5.0)
    assert p.mean == pytest.approx(3.0)
    assert p.std == pytest.approx(np.std([1, 2, 4, 5], ddof=1))
    assert p.quantiles["p50"] == pytest.approx(np.quantile([1, 2, 4, 5], 0.5))
    assert p.histogram is not None and sum(p.histogram["counts"]) == 4
    assert len(p.histogram["edges"]) == 11


def test_integers_strings_booleans_and_times() -> None:
    prof = profile_table(FRAME)
    i = prof.column("i")
    assert (i.logical_type, i.min, i.max) == ("integer", 1, 3)
    assert i.top_values[0] == (3, 3)
    s = prof.column("s")
    assert (s.logical_type, s.missing, s.distinct) == ("string", 1, 2)
    assert s.top_values == (("b", 3), ("a", 1))
    assert prof.column("flag").top_values[0] == (True, 3)
    t = prof.column("t")
    assert t.logical_type == "datetime" and t.missing == 1
    assert t.histogram is not None and sum(t.histogram["counts"]) == 4


def test_empty_table_and_all_null_column() -> None:
    empty = profile_table(pa.table({"a": pa.array([], pa.int64())}))
    assert empty.num_rows == 0 and empty.column("a").count == 0
    nulls = profile_table(pd.DataFrame({"x": [None, None]}, dtype="float64")).column("x")
    assert (nulls.missing, nulls.distinct, nulls.min) == (2, 0, None)


def test_round_trip_through_json() -> None:
    prof = profile_table(FRAME)
    data = json.loads(json.dumps(prof.to_dict()))
    assert DatasetProfile.from_dict(data).to_dict() == prof.to_dict()


def test_diff_reports_schema_and_missing_changes() -> None:
    a = profile_table(FRAME)
    b = profile_table(FRAME.drop(columns=["flag"]).assign(n=[1.0, None, None, 4.0, 5.0], extra=1))
    d = diff_profiles(a, b)
    assert d["added"] == ["extra"] and d["removed"] == ["flag"]
    assert d["missing_fraction_change"]["n"] == pytest.approx(0.2)
