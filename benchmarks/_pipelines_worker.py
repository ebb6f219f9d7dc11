"""One side of the pipelines benchmark, run with that tool's interpreter in a fresh process.

    python _pipelines_worker.py TOOL STEPS FOLDER

TOOL is ``wellml-local``, ``wellml-ray``, ``metaflow`` or ``zenml``; the worker builds a chain
of STEPS no-op steps (each takes the previous step's output) in FOLDER, runs it once to warm up
(a throw-away chain of 2 steps) and then times one run of the chain with caching off. It prints
one JSON line: ``{"tool", "steps", "seconds", "versions"}``.

TOOL ``tune-local`` or ``tune-ray`` instead runs a tuning study of STEPS trials (a random
forest, 3-fold cross-validation on 3,000 rows x 20 columns, no pruning, seed 0) and prints
``{"tool", "trials", "seconds", "startup_seconds", "best_value", "versions"}``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

_WELLML_CHAIN = """
from wellml.pipelines import Pipeline, Node, FromStep, Value, step

@step(cache=False)
def noop(prev: int, i: int) -> int:
    return i

def chain(n: int) -> Pipeline:
    nodes = [Node("s0", noop, {"prev": Value(0), "i": Value(0)})]
    for i in range(1, n):
        nodes.append(Node(f"s{i}", noop, {"prev": FromStep(f"s{i - 1}"), "i": Value(i)}))
    return Pipeline.from_nodes(f"chain{n}", nodes)
"""


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def wellml(steps: int, folder: Path, executor: str) -> float:
    """Seconds for ``ws.pipelines.run`` of the chain."""
    sys.path.insert(0, str(folder))
    (folder / "wellml_chain.py").write_text(_WELLML_CHAIN)
    import wellml_chain  # type: ignore[import-not-found]

    from wellml.workspace import Workspace

    ws = Workspace.init(folder / "ws", name="bench")
    if executor == "ray":
        import logging

        import ray

        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    ws.pipelines.run(wellml_chain.chain(2), executor=executor)  # warm up (and Ray's workers)
    started = time.perf_counter()
    run = ws.pipelines.run(wellml_chain.chain(steps), executor=executor)
    took = time.perf_counter() - started
    assert run.counts() == {"completed": steps}, run.counts()
    return took


def metaflow(steps: int, folder: Path) -> float:
    """Seconds for ``python flow.py run`` of a chain of ``steps`` steps (start ... end)."""
    lines = [
        "from metaflow import FlowSpec, step",
        "",
        "class Chain(FlowSpec):",
        "    @step",
        "    def start(self):",
        "        self.value = 0",
        "        self.next(self.s1)",
    ]
    for i in range(1, steps - 1):
        nxt = f"s{i + 1}" if i + 1 < steps - 1 else "end"
        lines += [
            "    @step",
            f"    def s{i}(self):",
            f"        self.value = {i}",
            f"        self.next(self.{nxt})",
        ]
    lines += ["    @step", "    def end(self):", "        pass", "", "if __name__ == '__main__':",
              "    Chain()"]  # fmt: skip
    flow = folder / f"chain{steps}.py"
    flow.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "USERNAME": "bench", "METAFLOW_DEFAULT_DATASTORE": "local"}
    command = [sys.executable, str(flow), "--no-pylint", "--quiet", "run"]
    started = time.perf_counter()
    subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def zenml(steps: int, folder: Path) -> float:
    """Seconds for a ZenML pipeline of ``steps`` chained steps on the local orchestrator."""
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "ERROR")
    os.environ["ZENML_CONFIG_PATH"] = str(folder / "zenml-config")
    code = textwrap.dedent(
        """
        from zenml import pipeline, step

        @step(enable_cache=False)
        def noop(prev: int, i: int) -> int:
            return i

        def chain(n):
            @pipeline(name=f"chain{n}", enable_cache=False)
            def run_chain():
                prev = noop(0, 0)
                for i in range(1, n):
                    prev = noop(prev, i)
            return run_chain
        """
    )
    (folder / "zenml_chain.py").write_text(code)
    sys.path.insert(0, str(folder))
    subprocess.run(
        [sys.executable, "-m", "zenml.cli.cli", "init"], cwd=folder, check=False,
        capture_output=True,
    )  # fmt: skip
    os.chdir(folder)
    import zenml_chain  # type: ignore[import-not-found]

    zenml_chain.chain(2)()  # warm up: creates the local store and stack
    started = time.perf_counter()
    zenml_chain.chain(steps)()
    return time.perf_counter() - started


def tune(trials: int, folder: Path, executor: str) -> dict[str, float]:
    """Seconds for a study of ``trials`` trials, and Ray's start-up apart."""
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from wellml.workspace import Workspace

    X, y = make_classification(n_samples=3000, n_features=20, n_informative=8, random_state=0)
    ws = Workspace.init(folder / "ws", name="bench")
    startup = 0.0
    if executor == "ray":
        import logging

        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        startup = time.perf_counter() - t0
    space = {"n_estimators": (20, 120), "max_depth": (2, 12), "min_samples_leaf": (1, 20)}
    started = time.perf_counter()
    result = ws.tuning.tune(
        RandomForestClassifier(n_jobs=1, random_state=0),
        space,
        X=X,
        y=np.asarray(y),
        n_trials=trials,
        seed=0,
        pruner="none",
        refit=False,
        executor=executor,
    )
    took = time.perf_counter() - started
    assert len(result.trials) == trials
    return {"seconds": took, "startup_seconds": startup, "best_value": result.best_value or 0.0}


def main() -> None:
    """Run one tool's chain (or study) and print the result as JSON."""
    tool, steps, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    os.chdir(folder)
    if tool in ("tune-local", "tune-ray"):
        figures = tune(steps, folder, tool.removeprefix("tune-"))
        versions = {"tool": _version("wellml"), "python": sys.version.split()[0]}
        print(json.dumps({"tool": tool, "trials": steps, **figures, "versions": versions}))
        return
    if tool == "wellml-local":
        seconds, package = wellml(steps, folder, "local"), "wellml"
    elif tool == "wellml-ray":
        seconds, package = wellml(steps, folder, "ray"), "wellml"
    elif tool == "metaflow":
        seconds, package = metaflow(steps, folder), "metaflow"
    elif tool == "zenml":
        seconds, package = zenml(steps, folder), "zenml"
    else:
        raise SystemExit(f"unknown tool {tool}")
    versions = {"tool": _version(package), "python": sys.version.split()[0]}
    print(json.dumps({"tool": tool, "steps": steps, "seconds": seconds, "versions": versions}))


if __name__ == "__main__":
    main()
