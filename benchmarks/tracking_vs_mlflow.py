"""Experiment tracking: wellml against MLflow on the same workloads, in one invocation.

Workloads, each on a fresh SQLite store in a fresh temporary folder and a fresh process:

  single  20 runs x (10 params + 3 metrics x 200 steps) = 12,000 metric points, one
          ``log_param`` / ``log_metric`` call at a time;
  batch   the same runs, one ``log_batch`` call per run (before either of these two, one
          empty run in another experiment takes a process's one-off costs; it is timed
          apart, as "first run of a process");
  search  1,000 runs with 10 params and a metric ``acc`` uniform in [0, 1] (seeded), then
          ``search_runs`` with ``metrics.acc > 0.5`` 50 times after one untimed call.

MLflow (``MlflowClient`` in-process, ``sqlite:///<tmp>/mlflow.db``) runs in its own virtual
environment, ``benchmarks/.venvs/mlflow``, created on first use; wellml runs with the
interpreter that runs this script. Results go to ``benchmarks/results/tracking.json``.

    .venv/bin/python benchmarks/tracking_vs_mlflow.py [--quick] [--rounds N]

Every workload runs ``--rounds`` times (3 by default), alternating the two tools; the table
shows the median of the rounds and the range of the per-round ratios.
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

from _machine import machine
from _peers import command_line, pinned_python, worker_json

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_tracking_worker.py"
MLFLOW_VENV = HERE / ".venvs" / "mlflow"
RESULTS = HERE / "results" / "tracking.json"

# The release that ``pip install mlflow`` resolved here when these figures were first taken
# (the registry lists mlflow 3.18.0, but not the mlflow-skinny 3.18.0 it needs). The venv is
# brought to this version when it holds another; ``--mlflow-version`` overrides it.
MLFLOW_VERSION = "3.17.2"
GOAL = 10.0

FULL = {"runs": 20, "params": 10, "metrics": 3, "steps": 200, "search_runs": 1000, "repeats": 50}
QUICK = {"runs": 4, "params": 10, "metrics": 3, "steps": 50, "search_runs": 200, "repeats": 10}

# (label, workload, figure, unit, True when higher is better)
ROWS = [
    ("log_metric, one call at a time", "single", "points_per_s", "points/s", True),
    ("log_metric, ms a call", "single", "log_metric_ms", "ms", False),
    ("log_batch, one call per run", "batch", "points_per_s", "points/s", True),
    ("search_runs p50", "search", "p50_ms", "ms", False),
    ("search_runs p90", "search", "p90_ms", "ms", False),
    ("first run of a process", "batch", "first_run_ms", "ms", False),
]
# The figures the 10x goal is set on.
GOAL_FIGURES = {("single", "points_per_s"), ("batch", "points_per_s"), ("search", "p50_ms")}


def mlflow_python(version: str) -> Path:
    """The interpreter of MLflow's venv, creating it or bringing it to ``version``."""
    return pinned_python(MLFLOW_VENV, "mlflow", version, "MLflow")


def run_worker(python: Path, tool: str, workload: str, sizes: dict[str, int]) -> dict[str, Any]:
    """Run one workload of one tool in a fresh temporary folder; return the worker's JSON."""
    runs = sizes["search_runs"] if workload == "search" else sizes["runs"]
    options = {**sizes, "runs": runs}
    del options["search_runs"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-{workload}-") as tmp:
        command = [str(python), str(WORKER), tool, workload, tmp]
        command += [f"--{k}={v}" for k, v in options.items()]
        # The folder is the working directory too, so nothing probes the caller's checkout.
        return worker_json(command, env, tmp, f"{tool} {workload}")


def median_figure(results: list[dict[str, Any]], figure: str) -> float:
    """The median over rounds of one figure."""
    return float(statistics.median(r[figure] for r in results))


def main() -> int:
    """Run both tools on every workload, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads, for a check")
    parser.add_argument(
        "--rounds",
        type=int,
        help="run every workload N times and report medians (default 3, or 1 with --quick)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--mlflow-version", default=MLFLOW_VERSION, help=f"default {MLFLOW_VERSION}"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or (1 if args.quick else 3)
    pythons = {"wellml": Path(sys.executable), "mlflow": mlflow_python(args.mlflow_version)}

    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for round_ in range(rounds):
        for workload in ("single", "batch", "search"):
            for tool in ("wellml", "mlflow"):
                print(f"round {round_ + 1}/{rounds}: {tool} {workload}", flush=True)
                result = run_worker(pythons[tool], tool, workload, sizes)
                raw.setdefault(workload, {}).setdefault(tool, []).append(result)

    searches = zip(raw["search"]["wellml"], raw["search"]["mlflow"], strict=True)
    for i, (ours, theirs) in enumerate(searches):
        expected = ours["expected_matches"]
        if not ours["matches"] == theirs["matches"] == expected:
            raise SystemExit(
                f"round {i + 1}: wellml found {ours['matches']} runs, MLflow "
                f"{theirs['matches']}, expected {expected}"
            )
        if ours["names"] != theirs["names"]:
            raise SystemExit(f"round {i + 1}: wellml and MLflow matched different runs")
        for side in (ours, theirs):
            del side["names"]

    versions = {tool: raw["single"][tool][0]["versions"] for tool in pythons}
    versions["python"] = {tool: raw["single"][tool][0]["python"] for tool in pythons}
    single = raw["single"]["wellml"][0]
    search = raw["search"]["wellml"][0]
    print(
        f"\nwellml {versions['wellml']['tool']} vs MLflow {versions['mlflow']['tool']}; "
        f"{single['runs']} runs x ({single['params_per_run']} params + "
        f"{single['points'] // single['runs']} points) = {single['points']} points; "
        f"search over {search['runs']} runs, {search['matches']} match, "
        f"{search['repeats']} timed calls; median of {rounds} round(s), range in brackets\n"
    )
    print(f"{'workload':32} {'wellml':>16} {'MLflow':>16} {'ratio':>8} {'range':>13}  goal")
    summary = []
    for label, workload, figure, unit, higher in ROWS:
        ours_v = median_figure(raw[workload]["wellml"], figure)
        theirs_v = median_figure(raw[workload]["mlflow"], figure)
        ratio = ours_v / theirs_v if higher else theirs_v / ours_v
        per_round = [
            a[figure] / b[figure] if higher else b[figure] / a[figure]
            for a, b in zip(raw[workload]["wellml"], raw[workload]["mlflow"], strict=True)
        ]
        spread = f"[{min(per_round):.1f}-{max(per_round):.1f}]"
        goal = (workload, figure) in GOAL_FIGURES and not args.quick  # set at full size
        met = "" if not goal else ("met" if ratio >= GOAL else "MISSED")
        fmt = ",.0f" if unit == "points/s" else ",.2f"
        print(
            f"{label:32} {format(ours_v, fmt) + ' ' + unit:>16} "
            f"{format(theirs_v, fmt) + ' ' + unit:>16} {ratio:7.1f}x {spread:>13}  {met}"
        )
        summary.append(
            {
                "workload": label,
                "unit": unit,
                "wellml": ours_v,
                "mlflow": theirs_v,
                "ratio": ratio,
                "ratio_per_round": per_round,
                "goal": GOAL if goal else None,
                "goal_met": (ratio >= GOAL) if goal else None,
            }
        )

    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "quick": args.quick,
        "rounds": rounds,
        "sizes": sizes,
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
