"""Experiment tracking, wellml against MLflow, on the same workloads in one invocation.

Workloads (the ones the MLflow figures in the reference notes were measured with):
  1. 20 runs x (10 params + 3 metrics x 200 steps) logged one call at a time;
  2. the same logged with one batch call per run;
  3. search over 1,000 runs with ``metrics.acc > 0.5``, repeated, p50 and p90.

MLflow runs in its own virtual environment (``benchmarks/.venvs/mlflow``, created on first
use); both use a fresh SQLite file in a temporary folder.

    python benchmarks/tracking_vs_mlflow.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_tracking_worker.py"
MLFLOW_VENV = HERE / ".venvs" / "mlflow"
RESULTS = HERE / "results" / "tracking.json"


def mlflow_python() -> Path:
    """The MLflow venv's interpreter, creating the venv on first use."""
    python = MLFLOW_VENV / "bin" / "python"
    if not (MLFLOW_VENV / ".ready").exists():
        print("installing MLflow into", MLFLOW_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlflow"], check=True)
        (MLFLOW_VENV / ".ready").touch()
    return python


def run_side(python: Path, tool: str, sizes: tuple[int, int, int]) -> dict[str, Any]:
    """Run one tool's worker in a fresh folder and return its figures."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as tmp:
        out = subprocess.run(
            [str(python), str(WORKER), tool, tmp, *(str(s) for s in sizes)],
            check=True,
            capture_output=True,
            text=True,
        )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    args = parser.parse_args()
    sizes = (4, 200, 10) if args.quick else (20, 1000, 50)
    ours = run_side(Path(sys.executable), "wellml", sizes)
    theirs = run_side(mlflow_python(), "mlflow", sizes)
    for side in (ours, theirs):
        if side["search_matches"] != side["expected_matches"]:
            raise SystemExit(
                f"{side['tool']} found {side['search_matches']} runs, expected "
                f"{side['expected_matches']}"
            )
    rows = [
        ("one log_metric call at a time (points/s)", "single_points_per_s", True),
        ("log_batch (points/s)", "batch_points_per_s", True),
        ("search_runs p50 (ms)", "search_p50_ms", False),
        ("search_runs p90 (ms)", "search_p90_ms", False),
    ]
    print(
        f"\nwellml {ours['version']} vs MLflow {theirs['version']}, Python "
        f"{platform.python_version()}, {ours['points']} points, "
        f"{ours['search_runs']} runs searched ({ours['search_matches']} match)\n"
    )
    print(f"{'workload':44} {'wellml':>12} {'MLflow':>12} {'ratio':>8}")
    ratios = {}
    for label, key, higher_better in rows:
        ratio = ours[key] / theirs[key] if higher_better else theirs[key] / ours[key]
        ratios[key] = ratio
        print(f"{label:44} {ours[key]:12.1f} {theirs[key]:12.1f} {ratio:7.1f}x")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"wellml": ours, "mlflow": theirs, "ratios": ratios, "quick": args.quick}, indent=2
        )
    )
    print(f"\nresults written to {RESULTS}")


if __name__ == "__main__":
    main()
