"""One tool's side of ``tracking_vs_mlflow.py``, run with that tool's own interpreter.

    python _tracking_worker.py {wellml|mlflow} {single|batch|search} WORKDIR [options]

It runs one workload against a fresh store in WORKDIR and prints one JSON object on its last
line of stdout. It uses only the standard library besides the tool under test, so the same file
runs in wellml's environment and in MLflow's.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

FILTER = "metrics.acc > 0.5"
EXPERIMENT = "bench"
WARMUP = "warmup"

# (key, value, step) for each metric point of one run.
Points = list[tuple[str, float, int]]


def logging_data(runs: int, params: int, metrics: int, steps: int) -> list[dict[str, Any]]:
    """Seeded names, params and metric points of the runs logged by ``single`` and ``batch``."""
    rng = random.Random(1)
    out = []
    for r in range(runs):
        out.append(
            {
                "name": f"run-{r}",
                "params": {f"param_{i}": f"{rng.random():.6f}" for i in range(params)},
                "points": [
                    (f"metric_{k}", rng.random(), step)
                    for step in range(steps)
                    for k in range(metrics)
                ],
            }
        )
    return out


def search_data(runs: int, params: int) -> list[dict[str, Any]]:
    """Seeded runs for ``search``: params and one ``acc`` point uniform in [0, 1]."""
    accs = random.Random(0)  # 1,000 runs: 492 with acc > 0.5
    rng = random.Random(2)
    out = []
    for r in range(runs):
        out.append(
            {
                "name": f"search-{r}",
                "params": {f"param_{i}": str(rng.randrange(100)) for i in range(params)},
                "acc": accs.random(),
            }
        )
    return out


class Side(Protocol):
    """What each tool's adapter offers the workloads."""

    def version(self) -> dict[str, str]:
        """Versions of the tool and of the libraries under it."""
        ...

    def first_run(self) -> None:
        """Start and end one empty run in another experiment, paying one-off costs."""
        ...

    def single(self, run: dict[str, Any]) -> float:
        """Log one run with one call per param and per metric point; return the seconds
        spent in the metric calls."""
        ...

    def batch(self, run: dict[str, Any]) -> None:
        """Log one run with a single batch call carrying its params and metric points."""
        ...

    def seed_search(self, run: dict[str, Any]) -> None:
        """Create one finished run for the search workload (not timed)."""
        ...

    def search(self) -> list[str]:
        """Run names of the runs matching ``FILTER``."""
        ...


class Wellml:
    """wellml's tracking API on a fresh workspace."""

    def __init__(self, workdir: Path) -> None:
        from wellml.workspace import Workspace

        self.ws = Workspace.init(workdir / "ws", name="bench")
        self.ws.tracking.experiment(EXPERIMENT)  # create it before any timing starts
        self.ws.tracking.experiment(WARMUP)

    def version(self) -> dict[str, str]:
        """wellml, SQLAlchemy and SQLite versions."""
        import sqlalchemy

        import wellml

        return {
            "tool": str(wellml.__version__),
            "sqlalchemy": sqlalchemy.__version__,
            "sqlite": sqlite3.sqlite_version,
        }

    def first_run(self) -> None:
        """An empty run (the first in a process also captures the Python environment)."""
        with self.ws.tracking.start_run(WARMUP, name="warmup"):
            pass

    def single(self, run: dict[str, Any]) -> float:
        """One ``log_param`` per param, one ``log_metric`` per point."""
        with self.ws.tracking.start_run(EXPERIMENT, name=run["name"]) as active:
            for key, value in run["params"].items():
                active.log_param(key, value)
            start = time.perf_counter()
            for key, value, step in run["points"]:
                active.log_metric(key, value, step=step)
            return time.perf_counter() - start

    def batch(self, run: dict[str, Any]) -> None:
        """One ``log_batch`` with every param and point of the run."""
        with self.ws.tracking.start_run(EXPERIMENT, name=run["name"]) as active:
            ts = time.time()
            active.log_batch(
                params=run["params"], metrics=[(k, v, s, ts) for k, v, s in run["points"]]
            )

    def seed_search(self, run: dict[str, Any]) -> None:
        """A run with its params and ``acc``."""
        with self.ws.tracking.start_run(EXPERIMENT, name=run["name"]) as active:
            active.log_batch(params=run["params"], metrics={"acc": run["acc"]})

    def search(self) -> list[str]:
        """``search_runs`` with the filter."""
        found = self.ws.tracking.search_runs(EXPERIMENT, filter=FILTER, max_results=5000)
        return [r.name for r in found]


class Mlflow:
    """MLflow's ``MlflowClient`` in-process on a fresh SQLite file."""

    def __init__(self, workdir: Path) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
        self.exp_id = self.client.create_experiment(EXPERIMENT)
        self.warmup_id = self.client.create_experiment(WARMUP)

    def version(self) -> dict[str, str]:
        """MLflow, SQLAlchemy and SQLite versions."""
        import mlflow
        import sqlalchemy

        return {
            "tool": str(mlflow.__version__),
            "sqlalchemy": sqlalchemy.__version__,
            "sqlite": sqlite3.sqlite_version,
        }

    def first_run(self) -> None:
        """An empty run."""
        run_id = self.client.create_run(self.warmup_id, run_name="warmup").info.run_id
        self.client.set_terminated(run_id)

    def single(self, run: dict[str, Any]) -> float:
        """One ``log_param`` per param, one ``log_metric`` per point."""
        client = self.client
        run_id = client.create_run(self.exp_id, run_name=run["name"]).info.run_id
        for key, value in run["params"].items():
            client.log_param(run_id, key, value)
        start = time.perf_counter()
        for key, value, step in run["points"]:
            client.log_metric(run_id, key, value, step=step)
        spent = time.perf_counter() - start
        client.set_terminated(run_id)
        return spent

    def batch(self, run: dict[str, Any]) -> None:
        """One ``log_batch`` with every param and point of the run."""
        from mlflow.entities import Metric, Param

        run_id = self.client.create_run(self.exp_id, run_name=run["name"]).info.run_id
        ts = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, ts, s) for k, v, s in run["points"]],
            params=[Param(k, v) for k, v in run["params"].items()],
        )
        self.client.set_terminated(run_id)

    def seed_search(self, run: dict[str, Any]) -> None:
        """A run with its params and ``acc``."""
        from mlflow.entities import Metric, Param

        run_id = self.client.create_run(self.exp_id, run_name=run["name"]).info.run_id
        self.client.log_batch(
            run_id,
            metrics=[Metric("acc", run["acc"], int(time.time() * 1000), 0)],
            params=[Param(k, v) for k, v in run["params"].items()],
        )
        self.client.set_terminated(run_id)

    def search(self) -> list[str]:
        """``MlflowClient.search_runs`` with the filter."""
        found = self.client.search_runs([self.exp_id], FILTER, max_results=5000)
        return [r.info.run_name for r in found]


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Yield a list that holds the elapsed seconds once the block ends."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def run_logging(side: Side, workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time ``single`` or ``batch`` over every run of the seeded data, after one untimed
    empty run."""
    data = logging_data(args.runs, args.params, args.metrics, args.steps)
    with stopwatch() as first:
        side.first_run()
    points = sum(len(r["points"]) for r in data)
    metric_seconds = 0.0
    with stopwatch() as total:
        for run in data:
            if workload == "single":
                metric_seconds += side.single(run)
            else:
                side.batch(run)
    out: dict[str, Any] = {
        "runs": args.runs,
        "params_per_run": args.params,
        "points": points,
        "first_run_ms": first[0] * 1000,
        "seconds": total[0],
        "points_per_s": points / total[0],
    }
    if workload == "single":
        out["log_metric_ms"] = metric_seconds / points * 1000
    return out


def run_search(side: Side, args: argparse.Namespace) -> dict[str, Any]:
    """Seed the runs, then time ``args.repeats`` searches after one untimed first call."""
    data = search_data(args.runs, args.params)
    with stopwatch() as seeding:
        for run in data:
            side.seed_search(run)
    with stopwatch() as first:
        side.search()
    times = []
    names: list[str] = []
    for _ in range(args.repeats):
        with stopwatch() as took:
            names = side.search()
        times.append(took[0])
    return {
        "runs": args.runs,
        "params_per_run": args.params,
        "filter": FILTER,
        "expected_matches": sum(r["acc"] > 0.5 for r in data),
        "matches": len(names),
        "names": sorted(names),
        "seed_seconds": seeding[0],
        "first_call_ms": first[0] * 1000,
        "repeats": args.repeats,
        "p50_ms": statistics.median(times) * 1000,
        "p90_ms": percentile(times, 90) * 1000,
        "min_ms": min(times) * 1000,
        "times_ms": [t * 1000 for t in times],
    }


def main() -> None:
    """Parse the command line, run the workload and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=("wellml", "mlflow"))
    parser.add_argument("workload", choices=("single", "batch", "search"))
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--params", type=int, default=10)
    parser.add_argument("--metrics", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    side: Side = Wellml(args.workdir) if args.tool == "wellml" else Mlflow(args.workdir)
    if args.workload == "search":
        result = run_search(side, args)
    else:
        result = run_logging(side, args.workload, args)
    result.update(
        tool=args.tool,
        workload=args.workload,
        versions=side.version(),
        python=platform.python_version(),
    )
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
