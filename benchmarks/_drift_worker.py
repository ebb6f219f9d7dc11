"""One side of ``drift_vs_evidently.py``, run in a fresh process with that side's interpreter.

    python _drift_worker.py {data|wellml|evidently|scipy} {default|forced|threads} ROWS

It builds the seeded reference and current frames (ROWS rows each, 15 numeric and 5
categorical columns, 7 of them drifted by construction), times one drift report over all 20
columns and prints one JSON object on its last line: the wall time of the report, the peak
resident memory of the whole process, the columns found drifted, and the data's digest (so
the driver can check that both interpreters drew the same data). It imports only NumPy and
pandas besides the tool under test, so the same file runs in wellml's environment and in
Evidently's.

``default`` runs the tests Evidently's ``DataDriftPreset`` picks for samples over 1,000 rows
(normalised Wasserstein distance for numeric columns, Jensen–Shannon distance with natural
logarithms for categorical ones, both with threshold 0.1); ``forced`` runs the two-sample
Kolmogorov–Smirnov test and a chi-square test on every column instead. ``data`` only builds
the frames, to measure what the data alone costs. ``threads`` (wellml only) is ``default``
checking two columns at a time.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import resource
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

NUMERIC = [f"num_{i}" for i in range(15)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
# Drifted by construction: the first five numeric and the first two categorical columns.
DRIFTED = NUMERIC[:5] + CATEGORICAL[:2]
CATEGORY_COUNTS = [4, 6, 10, 20, 3]
SEED = 20261129
THRESHOLD = 0.1  # Evidently's default for both distances


def _numeric(rng: np.random.Generator, family: int, rows: int, drifted: bool) -> np.ndarray:
    """One numeric column; ``drifted`` moves it by 0.35 to 0.5 standard deviations."""
    if family == 0:
        return rng.normal(11.0 if drifted else 10.0, 2.0, rows)
    if family == 1:
        return rng.lognormal(0.25 if drifted else 0.0, 0.5, rows)
    if family == 2:
        return rng.exponential(4.5 if drifted else 3.0, rows)
    if family == 3:
        return rng.uniform(20.0 if drifted else 0.0, 120.0 if drifted else 100.0, rows)
    return rng.gamma(2.0, 3.0 if drifted else 2.0, rows)


def _mix(k: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1) ** 1.2
    return weights / weights.sum()


def make_data(rows: int) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The reference and current frames, and a digest of their values."""
    rng = np.random.default_rng(SEED)
    digest = hashlib.sha256()
    blocks = {side: np.empty((len(NUMERIC), rows)) for side in ("reference", "current")}
    for i, name in enumerate(NUMERIC):
        for side in ("reference", "current"):
            blocks[side][i] = _numeric(rng, i % 5, rows, side == "current" and name in DRIFTED)
            digest.update(blocks[side][i].tobytes())
    frames = {}
    for side in ("reference", "current"):
        # A view of the 2-D block: pandas keeps it as one block, without a copy.
        frame = pd.DataFrame(blocks[side].T, columns=NUMERIC, copy=False)
        for j, name in enumerate(CATEGORICAL):
            k = CATEGORY_COUNTS[j]
            p = _mix(k)
            if side == "current" and name in DRIFTED:
                p = p[::-1]
            codes = rng.choice(k, size=rows, p=p)
            digest.update(codes.astype(np.int64).tobytes())
            labels = np.array([f"c{c:02d}" for c in range(k)], dtype=object)
            frame[name] = pd.Series(labels[codes], dtype=object)
        frames[side] = frame
    return frames["reference"], frames["current"], digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# The three tools


def run_wellml(reference: pd.DataFrame, current: pd.DataFrame, mode: str) -> list[str]:
    from wellml.monitoring.drift import (
        AutoSelection,
        ChiSquare,
        KolmogorovSmirnov,
        detect_drift,
    )

    if mode in ("default", "threads"):
        tests: dict[str, Any] = {
            "selection": AutoSelection(
                wasserstein=THRESHOLD, jensen_shannon=THRESHOLD, js_base=math.e
            )
        }
    else:
        tests = {"numeric_tests": [KolmogorovSmirnov()], "categorical_tests": [ChiSquare()]}
    report = detect_drift(
        reference,
        current,
        categorical=CATEGORICAL,
        distributions=True,
        n_jobs=2 if mode == "threads" else 1,
        **tests,
    ).to_dict()
    return [f["feature"] for f in report["features"] if f["drifted"]]


def run_evidently(reference: pd.DataFrame, current: pd.DataFrame, mode: str) -> list[str]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    ref = Dataset.from_pandas(reference, data_definition=definition)
    cur = Dataset.from_pandas(current, data_definition=definition)
    if mode == "default":
        preset = DataDriftPreset()
    else:
        preset = DataDriftPreset(num_method="ks", cat_method="chisquare")
    snapshot = Report([preset]).run(cur, ref)
    return evidently_drifted(snapshot.dict())


# Evidently's tests whose score is a p-value (drift below the threshold); for the others the
# score is a distance (drift at or above it).
P_VALUE_TESTS = {
    "ks",
    "chisquare",
    "z",
    "fisher_exact",
    "g_test",
    "cramer_von_mises",
    "anderson",
    "mannw",
    "t_test",
    "epps_singleton",
    "empirical_mmd",
}


def evidently_drifted(result: dict[str, Any]) -> list[str]:
    """The columns an Evidently snapshot calls drifted, checked against its own count.

    Each ``ValueDrift`` metric's config names its column, test and threshold, and its value
    is the test's score.
    """
    drifted = set()
    count = None
    for metric in result["metrics"]:
        config = metric.get("config") or {}
        kind = str(config.get("type", "")).rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            count = int(metric["value"]["count"])
        if kind != "ValueDrift":
            continue
        score, threshold = metric["value"], config["threshold"]
        p_value = str(config["method"]).lower() in P_VALUE_TESTS
        if (score < threshold) if p_value else (score >= threshold):
            drifted.add(config["column"])
    if count is not None and count != len(drifted):
        raise SystemExit(f"Evidently counts {count} drifted columns, its metrics {len(drifted)}")
    return [c for c in NUMERIC + CATEGORICAL if c in drifted]


def run_scipy(reference: pd.DataFrame, current: pd.DataFrame, mode: str) -> list[str]:
    from scipy import stats
    from scipy.spatial import distance

    drifted = []
    for name in NUMERIC:
        ref = reference[name].to_numpy()
        cur = current[name].to_numpy()
        if mode == "default":
            norm = max(float(np.std(ref)), 0.001)
            hit = stats.wasserstein_distance(ref, cur) / norm >= THRESHOLD
        else:
            hit = stats.ks_2samp(ref, cur).pvalue < 0.05
        if hit:
            drifted.append(name)
    for name in CATEGORICAL:
        ref_counts = reference[name].value_counts()
        cur_counts = current[name].value_counts()
        index = ref_counts.index.union(cur_counts.index)
        a = ref_counts.reindex(index, fill_value=0).to_numpy()
        b = cur_counts.reindex(index, fill_value=0).to_numpy()
        if mode == "default":
            hit = distance.jensenshannon(a / a.sum(), b / b.sum()) >= THRESHOLD
        else:
            hit = stats.chi2_contingency(np.vstack([a, b])).pvalue < 0.05
        if hit:
            drifted.append(name)
    return drifted


def versions(tool: str) -> dict[str, str]:
    """Versions of the tool and the libraries under it."""
    import importlib.metadata as md

    names = {"wellml": ["wellml"], "evidently": ["evidently"], "scipy": [], "data": []}[tool]
    out = {"numpy": np.__version__, "pandas": pd.__version__}
    for name in [*names, "scipy"]:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    tool, mode, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    run = {"wellml": run_wellml, "evidently": run_evidently, "scipy": run_scipy}.get(tool)
    if tool != "data" and run is None:
        raise SystemExit(f"unknown tool {tool!r}")
    if run is not None and tool != "scipy":
        # Import the tool before the clock starts, as a long-lived service would have.
        __import__("wellml.monitoring.drift" if tool == "wellml" else "evidently.presets")
    reference, current, digest = make_data(rows)
    seconds = None
    drifted: list[str] = []
    if run is not None:
        started = time.perf_counter()
        drifted = run(reference, current, mode)
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "tool": tool,
                "mode": mode,
                "rows": rows,
                "seconds": seconds,
                "peak_rss_mib": peak_rss_mib(),
                "drifted": drifted,
                "digest": digest,
                "versions": versions(tool),
                "python": platform.python_version(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
