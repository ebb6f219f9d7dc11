"""Data drift: wellml against Evidently's ``DataDriftPreset`` and plain SciPy, in one invocation.

Data: seeded reference and current frames of ROWS rows each, 20 columns (15 numeric from five
distribution families, 5 categorical with 3 to 20 categories); 7 columns are drifted by
construction (5 numeric, moved by 0.35–0.5 standard deviations, and 2 categorical, their mix
reversed), the other 13 are drawn from the same distribution on both sides.

Each tool runs in a fresh process that builds the data and times one drift report over all
columns; the process's peak resident memory is read at its end (the data included; a process
that only builds the data gives the baseline). Tests:

  default  what Evidently's preset picks above 1,000 rows: normalised Wasserstein distance on
           numeric columns, Jensen–Shannon distance (natural log) on categorical ones, both
           with threshold 0.1. wellml runs the same through ``AutoSelection``.
  forced   two-sample Kolmogorov–Smirnov on numeric columns and chi-square on categorical
           ones (Evidently: ``num_method="ks", cat_method="chisquare"``; wellml: its KS and
           two-sample chi-square with their effect-size floors; SciPy: ``ks_2samp`` and
           ``chi2_contingency``, p < 0.05).
  threads  wellml's default with two columns checked at a time.

Evidently runs in its own virtual environment, ``benchmarks/.venvs/evidently`` (created on
first use: Evidently 0.7.23 needs pandas < 3); wellml and SciPy run with the interpreter that
runs this script. Results go to ``benchmarks/results/drift.json``.

    .venv/bin/python benchmarks/drift_vs_evidently.py [--quick] [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_drift_worker.py"
EVIDENTLY_VENV = HERE / ".venvs" / "evidently"
RESULTS = HERE / "results" / "drift.json"
EVIDENTLY_VERSION = "0.7.23"

FULL_SIZES = [100_000, 1_000_000]
QUICK_SIZES = [20_000]
SPEED_GOAL = 20.0
MEMORY_GOAL = 1 / 3

sys.path.insert(0, str(HERE))
from _drift_worker import CATEGORICAL, DRIFTED, NUMERIC  # noqa: E402
from _machine import machine  # noqa: E402
from _peers import command_line, pinned_python, worker_json  # noqa: E402

# (label, tool, mode)
RUNS = [
    ("data alone (wellml's env)", "data", "default"),
    ("data alone (Evidently's env)", "data-evidently", "default"),
    ("wellml, Wasserstein + JS", "wellml", "default"),
    ("wellml, Wasserstein + JS, 2 threads", "wellml", "threads"),
    ("Evidently DataDriftPreset", "evidently", "default"),
    ("SciPy, Wasserstein + JS", "scipy", "default"),
    ("wellml, KS + chi-square", "wellml", "forced"),
    ("Evidently, KS + chi-square forced", "evidently", "forced"),
    ("SciPy, KS + chi-square", "scipy", "forced"),
]


def evidently_python(version: str) -> Path:
    """The interpreter of Evidently's venv, creating it or bringing it to ``version``."""
    return pinned_python(EVIDENTLY_VENV, "evidently", version, "Evidently", extra=["pandas<3"])


def run_worker(python: Path, tool: str, mode: str, rows: int) -> dict[str, Any]:
    """One tool's report in a fresh process, in a fresh temporary working folder."""
    env = {**os.environ, "DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"}
    with tempfile.TemporaryDirectory(prefix=f"bench-drift-{tool}-") as tmp:
        command = [str(python), str(WORKER), tool, mode, str(rows)]
        return worker_json(command, env, tmp, f"{tool} {mode} at {rows} rows")


def verdict(found: list[str]) -> dict[str, list[str]]:
    """Columns found drifted that are not (false alarms), and drifted ones not found."""
    return {
        "false_alarms": [c for c in found if c not in DRIFTED],
        "missed": [c for c in DRIFTED if c not in found],
    }


def main() -> int:
    """Run every tool at every size, print the tables and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZES[0]:,} rows only")
    parser.add_argument("--sizes", help="comma-separated row counts (default 100000,1000000)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per figure; median shown")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--evidently-version", default=EVIDENTLY_VERSION)
    args = parser.parse_args()
    if args.sizes:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    else:
        sizes = QUICK_SIZES if args.quick else FULL_SIZES
    evidently = evidently_python(args.evidently_version)
    pythons = {
        "data": Path(sys.executable),
        "data-evidently": evidently,
        "wellml": Path(sys.executable),
        "scipy": Path(sys.executable),
        "evidently": evidently,
    }

    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rows in sizes:
        for round_ in range(args.rounds):
            for label, tool, mode in RUNS:
                print(f"{rows:,} rows, round {round_ + 1}/{args.rounds}: {label}", flush=True)
                worker_tool = "data" if tool == "data-evidently" else tool
                result = run_worker(pythons[tool], worker_tool, mode, rows)
                raw.setdefault(str(rows), {}).setdefault(label, []).append(result)

    summary = []
    for rows in sizes:
        runs = raw[str(rows)]
        digests = {r["digest"] for results in runs.values() for r in results}
        if len(digests) != 1:
            raise SystemExit(f"the tools drew different data at {rows} rows: {digests}")
        print(
            f"\n{rows:,} rows in each of reference and current; {len(NUMERIC)} numeric + "
            f"{len(CATEGORICAL)} categorical columns, drifted by construction: "
            f"{', '.join(DRIFTED)}\n"
        )
        print(f"{'run':40} {'time':>9} {'peak RSS':>10}  drifted columns found")
        rows_summary: dict[str, Any] = {}
        for label, tool, _ in RUNS:
            results = runs[label]
            seconds = (
                None
                if tool.startswith("data")
                else statistics.median(r["seconds"] for r in results)
            )
            rss = statistics.median(r["peak_rss_mib"] for r in results)
            found = results[0]["drifted"]
            check = verdict(found)
            rows_summary[label] = {
                "seconds": seconds,
                "peak_rss_mib": rss,
                "drifted": found,
                **check,
            }
            shown = "-" if seconds is None else f"{seconds:.2f} s"
            note = ""
            if not tool.startswith("data"):
                note = (
                    f"{len(found)}"
                    + (
                        f"; false alarms: {', '.join(check['false_alarms'])}"
                        if check["false_alarms"]
                        else ""
                    )
                    + (f"; missed: {', '.join(check['missed'])}" if check["missed"] else "")
                )
            print(f"{label:40} {shown:>9} {rss:>7.0f} MiB  {note}")
        ours = rows_summary["wellml, Wasserstein + JS"]
        theirs = rows_summary["Evidently DataDriftPreset"]
        speed = theirs["seconds"] / ours["seconds"]
        memory = ours["peak_rss_mib"] / theirs["peak_rss_mib"]
        same = ours["drifted"] == theirs["drifted"]
        forced = (
            rows_summary["Evidently, KS + chi-square forced"]["seconds"]
            / rows_summary["wellml, KS + chi-square"]["seconds"]
        )
        print(
            f"\nwellml vs Evidently's preset, same tests: {speed:.1f}x faster "
            f"(goal {SPEED_GOAL:.0f}x: {'met' if speed >= SPEED_GOAL else 'MISSED'}); "
            f"peak memory {memory:.2f} of Evidently's (goal under {MEMORY_GOAL:.2f}: "
            f"{'met' if memory < MEMORY_GOAL else 'MISSED'}); same drifted columns: "
            f"{'yes' if same else 'NO'}. KS + chi-square forced: {forced:.1f}x faster."
        )
        summary.append(
            {
                "rows": rows,
                "runs": rows_summary,
                "speedup": speed,
                "memory_ratio": memory,
                "forced_speedup": forced,
                "same_drifted_columns": same,
                "goals_met": speed >= SPEED_GOAL and memory < MEMORY_GOAL and same,
            }
        )

    first = next(iter(raw.values()))
    versions = {
        "wellml": first["wellml, Wasserstein + JS"][0]["versions"],
        "evidently": first["Evidently DataDriftPreset"][0]["versions"],
    }
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "sizes": sizes,
        "rounds": args.rounds,
        "machine": machine(),
        "versions": versions,
        "summary": summary,
        "raw": raw,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
