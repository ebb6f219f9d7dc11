"""One side of the tracking benchmark, run in the tool's own environment.

Usage: python _tracking_worker.py {wellml|mlflow} WORKDIR POINTS_RUNS SEARCH_RUNS SEARCH_REPEATS
Prints one JSON object with the timings.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PARAMS = 10
METRICS = 3
STEPS = 200
SEARCH_STEPS = 20
FILTER = "metrics.acc > 0.5"


def _values(runs: int) -> list[dict[str, Any]]:
    rng = random.Random(42)
    out = []
    for r in range(runs):
        params = {f"p{i}": str(rng.random()) for i in range(PARAMS)}
        points = [(f"m{k}", rng.random(), step) for step in range(STEPS) for k in range(METRICS)]
        out.append({"name": f"run-{r}", "params": params, "points": points})
    return out


def _search_run(
    i: int, acc: float
) -> tuple[dict[str, str], dict[str, str], list[tuple[str, float, int]]]:
    """A searched run as people log them: 10 params, 3 tags, and 3 metrics over 20 steps,
    ending at ``acc``."""
    params = {f"p{j}": str((i * 31 + j) % 97) for j in range(PARAMS)}
    tags = {"team": f"t{i % 4}", "model": "rf" if i % 2 else "lr", "stage": "dev"}
    points = []
    for step in range(SEARCH_STEPS):
        frac = (step + 1) / SEARCH_STEPS
        points += [
            ("acc", acc * frac, step),
            ("loss", 1 - acc * frac, step),
            ("f1", acc * frac * 0.9, step),
        ]
    return params, tags, points


def _accuracies(runs: int) -> list[float]:
    rng = random.Random(7)
    return [rng.random() for _ in range(runs)]


class Wellml:
    def __init__(self, workdir: Path) -> None:
        from wellml.workspace import Workspace

        self.ws = Workspace.init(workdir / "ws", name="bench")

    def version(self) -> str:
        import wellml

        return str(wellml.__version__)

    def one_at_a_time(self, data: list[dict[str, Any]], exp: str) -> None:
        for r in data:
            with self.ws.tracking.start_run(exp, name=r["name"]) as run:
                for k, v in r["params"].items():
                    run.log_param(k, v)
                for key, value, step in r["points"]:
                    run.log_metric(key, value, step=step)

    def batched(self, data: list[dict[str, Any]], exp: str) -> None:
        for r in data:
            with self.ws.tracking.start_run(exp, name=r["name"]) as run:
                now = time.time()
                run.log_batch(
                    params=r["params"], metrics=[(k, v, s, now) for k, v, s in r["points"]]
                )

    def make_search_runs(self, accs: list[float], exp: str) -> None:
        for i, acc in enumerate(accs):
            params, tags, points = _search_run(i, acc)
            with self.ws.tracking.start_run(exp, name=f"s{i}") as run:
                now = time.time()
                run.log_batch(
                    params=params, tags=tags, metrics=[(k, v, s, now) for k, v, s in points]
                )

    def search(self, exp: str) -> int:
        return len(self.ws.tracking.search_runs(exp, filter=FILTER, max_results=5000))


class Mlflow:
    def __init__(self, workdir: Path) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
        self.exps: dict[str, str] = {}

    def version(self) -> str:
        import mlflow

        return str(mlflow.__version__)

    def _exp(self, name: str) -> str:
        if name not in self.exps:
            self.exps[name] = self.client.create_experiment(name)
        return self.exps[name]

    def one_at_a_time(self, data: list[dict[str, Any]], exp: str) -> None:
        exp_id = self._exp(exp)
        for r in data:
            run_id = self.client.create_run(exp_id, run_name=r["name"]).info.run_id
            for k, v in r["params"].items():
                self.client.log_param(run_id, k, v)
            for key, value, step in r["points"]:
                self.client.log_metric(run_id, key, value, step=step)
            self.client.set_terminated(run_id)

    def batched(self, data: list[dict[str, Any]], exp: str) -> None:
        from mlflow.entities import Metric, Param

        exp_id = self._exp(exp)
        for r in data:
            run_id = self.client.create_run(exp_id, run_name=r["name"]).info.run_id
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, s) for k, v, s in r["points"]],
                params=[Param(k, v) for k, v in r["params"].items()],
            )
            self.client.set_terminated(run_id)

    def make_search_runs(self, accs: list[float], exp: str) -> None:
        from mlflow.entities import Metric, Param, RunTag

        exp_id = self._exp(exp)
        now = int(time.time() * 1000)
        for i, acc in enumerate(accs):
            params, tags, points = _search_run(i, acc)
            run_id = self.client.create_run(exp_id, run_name=f"s{i}").info.run_id
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, s) for k, v, s in points],
                params=[Param(k, v) for k, v in params.items()],
                tags=[RunTag(k, v) for k, v in tags.items()],
            )
            self.client.set_terminated(run_id)

    def search(self, exp: str) -> int:
        return len(self.client.search_runs([self._exp(exp)], FILTER, max_results=5000))


def main() -> None:
    tool, workdir = sys.argv[1], Path(sys.argv[2])
    point_runs, search_runs, repeats = (int(a) for a in sys.argv[3:6])
    side = Wellml(workdir) if tool == "wellml" else Mlflow(workdir)
    data = _values(point_runs)
    points = point_runs * METRICS * STEPS

    t = time.perf_counter()
    side.one_at_a_time(data, "single")
    single = time.perf_counter() - t

    t = time.perf_counter()
    side.batched(data, "batch")
    batched = time.perf_counter() - t

    accs = _accuracies(search_runs)
    side.make_search_runs(accs, "search")
    side.search("search")  # warm caches and connections once, as a server would be
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        matches = side.search("search")
        times.append(time.perf_counter() - t)
    times.sort()
    print(
        json.dumps(
            {
                "tool": tool,
                "version": side.version(),
                "points": points,
                "single_points_per_s": points / single,
                "single_ms_per_call": single / (points + point_runs * PARAMS) * 1000,
                "batch_points_per_s": points / batched,
                "search_runs": search_runs,
                "search_matches": matches,
                "expected_matches": sum(a > 0.5 for a in accs),
                "search_p50_ms": statistics.median(times) * 1000,
                "search_p90_ms": times[int(0.9 * (len(times) - 1))] * 1000,
            }
        )
    )


if __name__ == "__main__":
    main()
