"""The data-poisoning guard: flipped labels, injected outliers and a sudden class shift block a
new training set; an honest refresh passes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wellml.errors import InvalidInput, NotFound
from wellml.monitoring.poisoning import PoisonedDataError, PoisoningCheck
from wellml.workspace import Workspace


def _training(n: int, seed: int, *, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    return pd.DataFrame(
        {
            "id": np.arange(start, start + n),
            "x": x,
            "z": rng.normal(5, 2, n),
            "y": (x + rng.normal(0, 0.3, n) > 0.5).astype(int),
        }
    )


def _refresh(old: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The old records unchanged plus a batch of new ones from the same process."""
    return pd.concat([old, _training(500, seed, start=len(old))], ignore_index=True)


def test_an_honest_refresh_passes() -> None:
    old = _training(3000, 0)
    report = PoisoningCheck(key="id", label="y").compute(_refresh(old, 1), old)
    assert not report.blocked and report.reasons == []
    assert report.signals["label_flip_rate"]["value"] == 0.0
    assert report.signals["label_flip_rate"]["matched_keys"] == 3000
    report.raise_if_blocked()


def test_flipped_labels_block_the_version() -> None:
    old = _training(3000, 0)
    new = _refresh(old, 2)
    flipped = new.sample(frac=0.1, random_state=0).index
    new.loc[flipped, "y"] = 1 - new.loc[flipped, "y"]
    report = PoisoningCheck(key="id", label="y").compute(
        new, old, new_ref="t@2", previous_ref="t@1"
    )
    assert report.blocked
    assert report.signals["label_flip_rate"]["blocked"]
    assert report.signals["label_flip_rate"]["value"] == pytest.approx(
        len(flipped[flipped < 3000]) / 3000
    )
    with pytest.raises(PoisonedDataError, match=r"t@2 is blocked .* label_flip_rate"):
        report.raise_if_blocked()


def test_injected_outliers_block_the_version() -> None:
    old = _training(3000, 0)
    injected = _training(300, 3, start=10_000).assign(x=40.0)
    report = PoisoningCheck(key="id", label="y").compute(pd.concat([old, injected]), old)
    signal = report.signals["outlier_excess"]
    assert signal["blocked"] and signal["value"] == pytest.approx(300 / 3300, abs=0.005)
    assert signal["features"]["x"] > 0.05


def test_a_sudden_class_ratio_change_blocks_the_version() -> None:
    old = _training(3000, 0)
    positives = _training(3000, 4, start=10_000)
    positives = positives[positives["y"] == 1]
    report = PoisoningCheck(key="id", label="y").compute(pd.concat([old, positives]), old)
    assert report.signals["class_ratio_change"]["blocked"]
    assert not report.signals["label_flip_rate"]["blocked"]


def test_thresholds_are_checked_and_tunable() -> None:
    with pytest.raises(InvalidInput, match="unknown threshold"):
        PoisoningCheck(key="id", label="y", thresholds={"flips": 0.1})
    old = _training(1000, 0)
    new = old.copy()
    new.loc[:29, "y"] = 1 - new.loc[:29, "y"]  # 3 % flipped
    assert not PoisoningCheck(key="id", label="y").compute(new, old).blocked
    strict = PoisoningCheck(key="id", label="y", thresholds={"label_flip_rate": 0.01})
    assert strict.compute(new, old).blocked
    with pytest.raises(InvalidInput, match="lacks column"):
        PoisoningCheck(key="customer", label="y").compute(new, old)


def test_the_workspace_stores_every_check_and_defaults_to_the_previous_version(
    workspace: Workspace,
) -> None:
    old = _training(2000, 0)
    workspace.data.register("train", old)
    with pytest.raises(NotFound, match="no previous version"):
        workspace.monitoring.poisoning_check("train@1", key="id", label="y")
    workspace.data.register("train", _refresh(old, 5))
    ok = workspace.monitoring.poisoning_check("train@2", key="id", label="y")
    assert (ok.new, ok.previous, ok.blocked) == ("train@2", "train@1", False)

    bad = _refresh(old, 6)
    bad.loc[:399, "y"] = 1 - bad.loc[:399, "y"]
    workspace.data.register("train", bad)
    with pytest.raises(PoisonedDataError):
        workspace.monitoring.poisoning_check("train@3", key="id", label="y", raise_on_block=True)
    stored = workspace.monitoring.poisoning_checks("train@3")
    assert len(stored) == 1 and stored[0]["blocked"] is True
    assert stored[0]["report"]["signals"]["label_flip_rate"]["blocked"] is True
    up = workspace.lineage.upstream(f"poisoning-report:{stored[0]['id']}")
    assert {"dataset:train@3", "dataset:train@2"} <= up.refs()
