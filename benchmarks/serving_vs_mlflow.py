"""Real-time serving: a wellml endpoint against ``mlflow models serve``, same model, one run.

The model is a standard scaler + logistic regression on 30 numeric features, fitted on the
same 5,000 seeded rows by each tool. Each server runs on 127.0.0.1 with its defaults for one
model (wellml: a router and one replica process; MLflow: one uvicorn worker). Workloads, from
a load generator written here (asyncio over kept-alive HTTP/1.1 connections, in this process):

  c1      one-row requests, one at a time;
  c16     one-row requests, 16 connections at once;
  rows    1,000-row requests (``dataframe_split``), one at a time.

wellml runs twice: as comparable to MLflow (no token, no capture) and as deployed by default
(bearer token and 100% data capture). A last scenario keeps 4 connections of one-row requests
going while the endpoint is updated by canary (10%, 5 s bake, error-rate alarm) to a good new
version, then to a broken one (its answers fail on live traffic; its smoke test is turned off
to let it reach traffic): it counts every request that saw an error.

    .venv/bin/python benchmarks/serving_vs_mlflow.py [--quick] [--skip-mlflow]

MLflow runs in its own virtual environment, ``benchmarks/.venvs/mlflow`` (created on first
use, like the tracking benchmark). Results go to ``benchmarks/results/serving.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import machine  # noqa: E402
from _peers import worker_json  # noqa: E402
from tracking_vs_mlflow import MLFLOW_VERSION, mlflow_python  # noqa: E402

WORKER = HERE / "_serving_worker.py"
RESULTS = HERE / "results" / "serving.json"
FEATURES = 30
GOAL_RATIO = 4.0

FULL = {"c1": 3000, "c16": 8000, "rows": 300, "seconds": 20.0, "bake": 5.0}
QUICK = {"c1": 600, "c16": 1500, "rows": 60, "seconds": 8.0, "bake": 3.0}


# -- the load generator -----------------------------------------------------------------------


class Load:
    """Latencies and failures of one load run."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures = 0
        self.statuses: dict[int, int] = {}
        self.elapsed = 0.0

    def summary(self) -> dict[str, Any]:
        """Requests a second, p50 and p99 in milliseconds."""
        lat = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not lat:
                return None
            return round(lat[max(0, round(q / 100 * len(lat)) - 1)] * 1000, 3)

        n = len(lat) + self.failures
        return {
            "requests": n,
            "failed": self.failures,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "rps": round(n / self.elapsed, 1) if self.elapsed else None,
            "p50_ms": pct(50),
            "p99_ms": pct(99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else None,
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    chunked = False
    close = False
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
        elif k == b"connection" and v.strip().lower() == b"close":
            close = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


async def _connection(
    host: str,
    port: int,
    request: bytes,
    load: Load,
    stop_at: float,
    remaining: list[int],
) -> None:
    reader = writer = None
    while remaining[0] > 0 and time.monotonic() < stop_at:
        remaining[0] -= 1
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                load.failures += 1
                await asyncio.sleep(0.01)
                continue
        assert reader is not None
        t0 = time.perf_counter()
        try:
            writer.write(request)
            status, close = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError):
            load.failures += 1
            writer.close()
            reader = writer = None
            continue
        load.statuses[status] = load.statuses.get(status, 0) + 1
        if status == 200:
            load.latencies.append(time.perf_counter() - t0)
        else:
            load.failures += 1
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def http_request(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    """One raw HTTP/1.1 POST request."""
    head = f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    head += f"content-length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def run_load(
    host: str,
    port: int,
    request: bytes,
    *,
    concurrency: int,
    requests: int,
    seconds: float,
    warmup: int = 50,
) -> Load:
    """Send ``requests`` requests (at most ``seconds``) over ``concurrency`` connections."""
    if warmup:
        await run_load(
            host, port, request, concurrency=concurrency, requests=warmup, seconds=seconds, warmup=0
        )
    load = Load()
    remaining = [requests]
    t0 = time.perf_counter()
    stop_at = time.monotonic() + seconds
    await asyncio.gather(
        *(_connection(host, port, request, load, stop_at, remaining) for _ in range(concurrency))
    )
    load.elapsed = time.perf_counter() - t0
    return load


# -- the servers ---------------------------------------------------------------------------------


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ping(port: int, timeout: float = 120) -> None:
    """Wait until ``GET /ping`` answers 200."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not come up")


def data(rows: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """The seeded training data."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, FEATURES))
    w = rng.normal(size=FEATURES)
    y = (X @ w + rng.normal(size=rows) > 0).astype(int)
    return X, y


def payloads(X: np.ndarray) -> dict[str, bytes]:
    """Request bodies: one row, and 1,000 rows (values rounded to 6 decimals)."""
    cols = [f"f{i}" for i in range(FEATURES)]
    one = {"dataframe_split": {"columns": cols, "data": [np.round(X[0], 6).tolist()]}}
    many = {"dataframe_split": {"columns": cols, "data": np.round(X[:1000], 6).tolist()}}
    return {"one": json.dumps(one).encode(), "rows": json.dumps(many).encode()}


def measure(
    port: int,
    bodies: dict[str, bytes],
    sizes: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The three workloads against one server."""
    one = http_request("127.0.0.1", port, "/invocations", bodies["one"], headers)
    rows = http_request("127.0.0.1", port, "/invocations", bodies["rows"], headers)
    out = {}
    for label, req, conc, n in (
        ("c1", one, 1, sizes["c1"]),
        ("c16", one, 16, sizes["c16"]),
        ("rows", rows, 1, sizes["rows"]),
    ):
        load = asyncio.run(
            run_load(
                "127.0.0.1",
                port,
                req,
                concurrency=conc,
                requests=n,
                seconds=sizes["seconds"],
                warmup=20 if label == "rows" else 100,
            )
        )
        out[label] = load.summary()
        print(f"  {label}: {out[label]}", flush=True)
    return out


def wellml_side(
    X: np.ndarray, y: np.ndarray, bodies: dict[str, bytes], sizes: dict[str, Any]
) -> dict[str, Any]:
    """Serve the model with wellml: comparable settings, then defaults, then the rollouts."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from wellml.serving import DeploymentPolicy, ErrorRateAlarm
    from wellml.workspace import Workspace

    cols = [f"f{i}" for i in range(FEATURES)]
    frame = pd.DataFrame(X, columns=cols)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        ws = Workspace.init(Path(tmp) / "ws", name="bench")
        train = ws.data.register("train", frame.assign(y=y))
        models = {
            "good": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
            "good2": make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000)),
            # Fails on every row with a negative first feature once it serves traffic.
            "broken": make_pipeline(
                FunctionTransformer(np.sqrt), LogisticRegression(max_iter=1000)
            ),
        }
        for key, model in models.items():
            with ws.tracking.start_run("bench", name=key) as run:
                run.log_input(train, "train")
                fit_X = frame.abs() if key == "broken" else frame
                model.fit(fit_X, y)
                ws.registry.register("m", model, X=frame, y=y, run=run)
        for v in (1, 2, 3):
            ws.registry.approve(f"m@{v}", by="bench")

        print("wellml, no token, no capture", flush=True)
        port = free_port()
        with ws.endpoints.start("m@1", name="plain", port=port, auth=False, capture_percent=0):
            out["plain"] = measure(port, bodies, sizes)

        print("wellml defaults: token and 100% capture", flush=True)
        port = free_port()
        with ws.endpoints.start("m@1", name="default", port=port):
            token = ws.endpoints.issue_token("default", "bench").secret
            out["default"] = measure(port, bodies, sizes, {"authorization": f"Bearer {token}"})

        print("canary rollouts under steady load", flush=True)
        policy = DeploymentPolicy(
            strategy="canary",
            canary_percent=10,
            bake_seconds=sizes["bake"],
            alarms=(ErrorRateAlarm(max_rate=0.05, min_requests=20),),
        )
        port = free_port()
        ws.endpoints.deploy("m@1", name="live", port=port, auth=False, policy=policy)
        with ws.endpoints.start(name="live"):
            out["rollout"] = rollouts(ws, port, bodies["one"], policy)
        ws.close()
    return out


def rollouts(ws: Any, port: int, body: bytes, policy: Any) -> dict[str, Any]:
    """A good and a broken canary rollout while 4 connections send requests."""
    from wellml.serving import DeploymentPolicy

    request = http_request("127.0.0.1", port, "/invocations", body)
    results: dict[str, Any] = {}

    def under_load(label: str, update: Any) -> None:
        stop = threading.Event()
        holder: dict[str, Any] = {}

        def drive() -> None:
            async def go() -> Load:
                load = Load()
                t0 = time.perf_counter()
                while not stop.is_set():
                    part = await run_load(
                        "127.0.0.1", port, request, concurrency=4, requests=400, seconds=5, warmup=0
                    )
                    load.latencies.extend(part.latencies)
                    load.failures += part.failures
                    for k, v in part.statuses.items():
                        load.statuses[k] = load.statuses.get(k, 0) + v
                load.elapsed = time.perf_counter() - t0
                return load

            holder["load"] = asyncio.run(go())

        thread = threading.Thread(target=drive)
        thread.start()
        time.sleep(1.0)
        t0 = time.perf_counter()
        dep = update()
        took = time.perf_counter() - t0
        time.sleep(1.0)
        stop.set()
        thread.join()
        results[label] = {
            "outcome": dep["outcome"],
            "reason": dep.get("reason"),
            "seconds": round(took, 2),
            "steps": [s["action"] for s in dep.get("steps") or []],
            "load": holder["load"].summary(),
        }
        print(f"  {label}: {results[label]}", flush=True)

    under_load("good", lambda: ws.endpoints.update("live", model="m@2", policy=policy))
    broken_policy = DeploymentPolicy(
        strategy="canary",
        canary_percent=policy.canary_percent,
        bake_seconds=policy.bake_seconds,
        smoke_test=False,
        alarms=policy.alarms,
    )
    under_load("broken", lambda: ws.endpoints.update("live", model="m@3", policy=broken_policy))
    return results


def mlflow_side(
    X: np.ndarray, y: np.ndarray, bodies: dict[str, bytes], sizes: dict[str, Any]
) -> dict[str, Any]:
    """Serve the same model with ``mlflow models serve`` and measure it."""
    python = mlflow_python(MLFLOW_VERSION)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    with tempfile.TemporaryDirectory(prefix="bench-serving-mlflow-") as tmp:
        np.savez(Path(tmp) / "data.npz", X=X, y=y)
        fit = [str(python), str(WORKER), str(Path(tmp) / "data.npz"), tmp]
        model = worker_json(fit, env, tmp, "mlflow model fit")["model"]
        port = free_port()
        mlflow_bin = python.parent / "mlflow"
        # MLflow starts its scoring server by running ``uvicorn`` from the PATH.
        env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
        server = subprocess.Popen(
            [
                str(mlflow_bin),
                "models",
                "serve",
                "-m",
                model,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_ping(port)
            print("mlflow models serve", flush=True)
            return measure(port, bodies, sizes)
        finally:
            os.killpg(server.pid, 15)
            server.wait(30)


def main() -> int:
    """Run both sides, print the table, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a check")
    parser.add_argument("--skip-mlflow", action="store_true", help="measure wellml only")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    X, y = data()
    bodies = payloads(X)
    results: dict[str, Any] = {
        "machine": machine(),
        "sizes": sizes,
        "command": shlex.join([sys.executable, *sys.argv]),
    }
    results["wellml"] = wellml_side(X, y, bodies, sizes)
    if not args.skip_mlflow:
        results["mlflow"] = mlflow_side(X, y, bodies, sizes)
    print()
    print(f"{'workload':<34}{'wellml':>14}{'wellml default':>16}{'MLflow':>12}{'ratio':>8}")
    rows = [
        ("1 row, concurrency 1: requests/s", "c1", "rps", True),
        ("1 row, concurrency 1: p50 ms", "c1", "p50_ms", False),
        ("1 row, concurrency 1: p99 ms", "c1", "p99_ms", False),
        ("1 row, concurrency 16: requests/s", "c16", "rps", True),
        ("1 row, concurrency 16: p50 ms", "c16", "p50_ms", False),
        ("1 row, concurrency 16: p99 ms", "c16", "p99_ms", False),
        ("1,000 rows: p50 ms", "rows", "p50_ms", False),
        ("1,000 rows: p99 ms", "rows", "p99_ms", False),
    ]
    for label, workload, figure, higher in rows:
        w = results["wellml"]["plain"][workload][figure]
        d = results["wellml"]["default"][workload][figure]
        m = results.get("mlflow", {}).get(workload, {}).get(figure)
        ratio = ""
        if m and w:
            ratio = f"{(w / m if higher else m / w):.1f}x"
        print(f"{label:<34}{w!s:>14}{d!s:>16}{m!s:>12}{ratio:>8}")
    for label, r in results["wellml"]["rollout"].items():
        print(
            f"canary of the {label} version: {r['outcome']}; "
            f"{r['load']['failed']} of {r['load']['requests']} requests failed"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
