"""Pipelines and tuning: per-step overhead against Metaflow and ZenML, and a tuning study on Ray
against the in-process executor, in one invocation.

Workloads, each in a fresh process and a fresh temporary folder:

  chain   a chain of no-op steps (each takes the previous step's output), caching off: wellml
          in this process (``local``) and on a local Ray with 2 CPUs, Metaflow's local runner
          (``python flow.py run``) and ZenML's local orchestrator. Each tool runs a chain of
          ``--steps`` (50) and of 5 steps after a warm-up; the per-step overhead is
          ``(T(50) - T(5)) / 45``, which leaves out what a run costs once (start-up, imports,
          the run's own records).
  tune    ``--trials`` (20) trials of a random forest, 3-fold cross-validation on 3,000 rows x
          20 columns, no pruning, seed 0, with ``executor="local"`` and ``executor="ray"``
          (2 CPUs; Ray's start-up timed apart).

Metaflow and ZenML run in their own virtual environments, ``benchmarks/.venvs/metaflow`` and
``benchmarks/.venvs/zenml``, created on first use; wellml runs with the interpreter that runs
this script. Results go to ``benchmarks/results/pipelines.json``.

    .venv/bin/python benchmarks/pipelines_overhead.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _machine import machine
from _peers import command_line, installed, worker_json

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_pipelines_worker.py"
VENVS = HERE / ".venvs"
RESULTS = HERE / "results" / "pipelines.json"
PEERS = {"metaflow": "metaflow", "zenml": "zenml[local]"}
SHORT = 5


def peer_python(tool: str) -> Path | None:
    """The interpreter of a peer's venv, created on first use; None when it cannot install."""
    venv = VENVS / tool
    python = venv / "bin" / "python"
    if python.exists() and installed(python, tool) is not None:
        return python
    print(f"creating {venv} with {PEERS[tool]}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip", PEERS[tool]]
    out = subprocess.run(pip, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"{tool} could not be installed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return python


def run_worker(python: Path, tool: str, n: int) -> dict[str, Any]:
    """One measurement in a fresh temporary folder; the worker's JSON."""
    env = {**os.environ, "ZENML_ANALYTICS_OPT_IN": "false", "DO_NOT_TRACK": "true"}
    if tool.startswith(("wellml", "tune")):
        env["PYTHONPATH"] = str(HERE.parent / "src")
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as tmp:
        command = [str(python), str(WORKER), tool, str(n), tmp]
        return worker_json(command, env, tmp, f"{tool} ({n})", tail=(4000, 4000))


def main() -> int:
    """Measure every tool, print the tables and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and trials")
    parser.add_argument("--rounds", type=int, help="repeat each measurement (default 3; 1 quick)")
    parser.add_argument("--steps", type=int, help="steps in the long chain (default 50)")
    parser.add_argument("--trials", type=int, help="trials of the study (default 20)")
    parser.add_argument("--skip", action="append", default=[], help="a tool to leave out")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    steps = args.steps or (20 if args.quick else 50)
    trials = args.trials or (6 if args.quick else 20)
    rounds = args.rounds or (1 if args.quick else 3)

    pythons: dict[str, Path | None] = {
        "wellml-local": Path(sys.executable),
        "wellml-ray": Path(sys.executable),
    }
    for peer in ("metaflow", "zenml"):
        if peer not in args.skip:
            pythons[peer] = peer_python(peer)
    for skipped in args.skip:
        pythons.pop(skipped, None)

    chain: dict[str, dict[str, Any]] = {}
    for tool, python in pythons.items():
        if python is None:
            chain[tool] = {"error": "could not be installed"}
            continue
        longs, shorts, version = [], [], ""
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}: {tool} chain of {steps} and of {SHORT}", flush=True)
            long_run = run_worker(python, tool, steps)
            short_run = run_worker(python, tool, SHORT)
            longs.append(long_run["seconds"])
            shorts.append(short_run["seconds"])
            version = long_run["versions"]["tool"]
        per_step = [(lo - sh) / (steps - SHORT) for lo, sh in zip(longs, shorts, strict=True)]
        chain[tool] = {
            "version": version,
            "long_seconds": longs,
            "short_seconds": shorts,
            "per_step_ms": statistics.median(per_step) * 1000,
            "per_step_ms_range": [min(per_step) * 1000, max(per_step) * 1000],
            "long_per_step_ms": statistics.median(longs) / steps * 1000,
        }

    tuning: dict[str, dict[str, Any]] = {}
    for tool in ("tune-local", "tune-ray"):
        results = []
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}: {tool} {trials} trials", flush=True)
            results.append(run_worker(Path(sys.executable), tool, trials))
        tuning[tool] = {
            "seconds": statistics.median(x["seconds"] for x in results),
            "seconds_all": [x["seconds"] for x in results],
            "startup_seconds": statistics.median(x["startup_seconds"] for x in results),
            "best_value": results[0]["best_value"],
        }

    print(f"\nper-step overhead, chain of {steps} minus chain of {SHORT}, median of {rounds}")
    print(f"{'tool':14} {'version':>10} {'ms/step':>10} {'range':>17} {'T(long)/steps':>14}")
    for tool, row in chain.items():
        if "error" in row:
            print(f"{tool:14} {'-':>10} {row['error']}")
            continue
        lo, hi = row["per_step_ms_range"]
        print(f"{tool:14} {row['version']:>10} {row['per_step_ms']:>10.1f} "
              f"{f'{lo:.1f}-{hi:.1f}':>17} {row['long_per_step_ms']:>14.1f}")  # fmt: skip
    local, ray = tuning["tune-local"], tuning["tune-ray"]
    print(f"\ntuning, {trials} trials, median of {rounds}")
    print(f"local {local['seconds']:.1f} s; ray {ray['seconds']:.1f} s "
          f"(+{ray['startup_seconds']:.1f} s to start Ray); speed-up "
          f"{local['seconds'] / ray['seconds']:.2f}x")  # fmt: skip

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "command": command_line(),
                "machine": machine(),
                "steps": steps,
                "short_steps": SHORT,
                "trials": trials,
                "rounds": rounds,
                "chain": chain,
                "tuning": tuning,
            },
            indent=2,
        )
    )
    print(f"\nresults in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
