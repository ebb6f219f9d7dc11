"""The supervisor of a running endpoint: its replica processes, their restarts and scaling,
and the deployments that move it from one configuration to the next.

It runs in the same process and event loop as the endpoint's :class:`~wellml.serving.router.
Router`. Each replica is a child process serving one variant on a listening socket that the
supervisor created and keeps, so a replica restarted after a crash answers on the same port.
Deployments arrive as ``pending`` rows in the endpoint's deployment history (written by
``Endpoints.update`` or ``Endpoints.rollback``, from any process); the supervisor carries each
out step by step and records every step and the outcome on that row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from wellml.serving.config import (
    Alarm,
    CaptureMetricAlarm,
    DeploymentPolicy,
    EndpointConfig,
    ErrorRateAlarm,
    LatencyAlarm,
    ProductionVariant,
    ShadowVariant,
)
from wellml.serving.proxy import ReplicaClient, ReplicaUnavailable
from wellml.serving.replica import SECRET_ENV
from wellml.serving.router import Replica, Router, VariantRoute
from wellml.store import serving as sql
from wellml.store.metadata import now

if TYPE_CHECKING:
    from wellml.workspace import Workspace

log = logging.getLogger("wellml.serving")

READY_TIMEOUT = 180.0
RESTART_BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(eq=False)
class ReplicaProcess:
    """A replica child process and the listening socket it serves on."""

    variant: str
    model_version_id: str
    shadow: bool
    sock: socket.socket
    replica: Replica
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    last_exit: float = 0.0
    retiring: bool = False
    multi_model: str | None = None  # the variant's multi-model settings as JSON

    @property
    def port(self) -> int:
        """The loopback port it answers on."""
        return int(self.sock.getsockname()[1])

    def alive(self) -> bool:
        """Whether the process runs."""
        return self.process is not None and self.process.poll() is None


@dataclass
class _Scaling:
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=600))
    last_action: float = 0.0


class DeploymentFailed(Exception):
    """A deployment step failed; the deployment is rolled back."""


class Supervisor:
    """Keeps an endpoint's replicas running and applies its deployments."""

    def __init__(
        self,
        ws: Workspace,
        endpoint_id: str,
        name: str,
        config: EndpointConfig,
        config_version: int,
        secret: str,
        *,
        poll_seconds: float = 0.2,
    ) -> None:
        self.ws = ws
        self.endpoint_id = endpoint_id
        self.name = name
        self.config = config
        self.config_version = config_version
        self.secret = secret
        self.poll_seconds = poll_seconds
        self.router: Router | None = None
        self.procs: dict[str, list[ReplicaProcess]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._deploying = False
        self._scaling: dict[str, _Scaling] = {}
        self._model_ids: dict[str, str] = {}

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every variant's replicas, wait until they answer, then keep watching."""
        assert self.router is not None
        await asyncio.to_thread(self._close_stale_deployments)
        for v in self.config.variants:
            await self.add_variant(v)
        for s in self.config.shadows:
            await self.add_variant(s)
        self.router.table.set_weights({v.name: v.weight for v in self.config.variants})
        self._publish_weights()
        await self.wait_ready([v.name for v in self.config.all_variants()])
        self._tasks = [
            asyncio.create_task(self._watch(), name="wellml-watch"),
            asyncio.create_task(self._control(), name="wellml-control"),
        ]

    async def shutdown(self) -> None:
        """Stop watching and stop every replica (each flushes its captured data)."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self.router is not None:
            await self.router.drain()
        await asyncio.gather(
            *(self._stop_proc(p) for procs in self.procs.values() for p in procs),
            return_exceptions=True,
        )
        self.procs.clear()
        await asyncio.to_thread(self._persist_runtime)

    def _close_stale_deployments(self) -> None:
        with self.ws.metadata.write() as conn:
            for dep in sql.open_deployments(conn, self.endpoint_id):
                if dep["outcome"] == "in-progress":
                    sql.end_deployment(
                        conn, dep["id"], "interrupted", "the endpoint stopped during it"
                    )

    # -- replicas ------------------------------------------------------------------------------

    def _model_id(self, ref: str) -> str:
        if ref not in self._model_ids:
            self._model_ids[ref] = self.ws.registry.get(ref).id
        return self._model_ids[ref]

    async def add_variant(self, variant: ProductionVariant | ShadowVariant) -> None:
        """Start a variant's replicas and give it a (zero-weight) route."""
        assert self.router is not None
        shadow = isinstance(variant, ShadowVariant)
        model_id = await asyncio.to_thread(self._model_id, variant.model_version)
        route = VariantRoute(
            variant.name,
            variant.model_version,
            shadow_percent=variant.sampling_percent if isinstance(variant, ShadowVariant) else None,
        )
        self.router.table.variants[variant.name] = route
        self.procs[variant.name] = []
        multi = getattr(variant, "multi_model", None)
        spec = json.dumps(multi.to_dict()) if multi is not None else None
        for _ in range(variant.replicas):
            self._spawn_new(variant.name, model_id, shadow, multi_model=spec)
        self.publish_replicas()

    def _spawn_new(
        self, variant: str, model_id: str, shadow: bool, *, multi_model: str | None = None
    ) -> ReplicaProcess:
        assert self.router is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(2048)
        port = sock.getsockname()[1]
        replica = Replica(variant, port, ReplicaClient("127.0.0.1", port))
        proc = ReplicaProcess(variant, model_id, shadow, sock, replica, multi_model=multi_model)
        self._spawn(proc)
        self.procs.setdefault(variant, []).append(proc)
        self.router.table.variants[variant].replicas.append(replica)
        return proc

    def _spawn(self, proc: ReplicaProcess) -> None:
        cmd = [
            sys.executable,
            "-m",
            "wellml.serving.replica",
            "--workspace",
            str(self.ws.root),
            "--endpoint",
            self.name,
            "--variant",
            proc.variant,
            "--model-version-id",
            proc.model_version_id,
            "--fd",
            str(proc.sock.fileno()),
        ]
        if proc.shadow:
            cmd.append("--shadow")
        if proc.multi_model is not None:
            cmd += ["--multi-model", proc.multi_model]
        env = {**os.environ, SECRET_ENV: self.secret}
        proc.process = subprocess.Popen(
            cmd, pass_fds=(proc.sock.fileno(),), env=env, stdin=subprocess.DEVNULL
        )
        proc.started_at = time.monotonic()
        proc.replica.ready = False

    async def wait_ready(
        self,
        variants: list[str],
        timeout: float = READY_TIMEOUT,
        *,
        only: list[ReplicaProcess] | None = None,
    ) -> None:
        """Wait until every replica of ``variants`` (or just the ``only`` ones) answers /ping.

        Raises:
            DeploymentFailed: a replica exited, or did not answer in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            pending = [
                p
                for v in variants
                for p in self.procs.get(v, [])
                if not p.replica.ready and (only is None or p in only)
            ]
            if not pending:
                self.publish_replicas()
                return
            for p in pending:
                if p.process is not None and p.process.poll() is not None:
                    raise DeploymentFailed(
                        f"a replica of {p.variant} exited at start with code {p.process.returncode}"
                    )
                await self._probe(p)
            if time.monotonic() > deadline:
                raise DeploymentFailed(
                    f"replicas of {', '.join(sorted({p.variant for p in pending}))} did not "
                    f"answer in {timeout:.0f} s"
                )
            await asyncio.sleep(0.1)

    async def _probe(self, proc: ReplicaProcess) -> bool:
        if not proc.alive():
            return False
        try:
            resp = await proc.replica.client.request("GET", "/ping", [], timeout=2.0)
        except (TimeoutError, ReplicaUnavailable, OSError):
            return False
        proc.replica.ready = resp.status == 200 and not proc.retiring
        return proc.replica.ready

    async def _stop_proc(self, proc: ReplicaProcess, *, drain: float = 10.0) -> None:
        """Take a replica out of rotation, let its requests finish, and stop it."""
        proc.retiring = True
        proc.replica.ready = False
        deadline = time.monotonic() + drain
        while proc.replica.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        proc.replica.client.close()
        if proc.process is not None and proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.process.wait, 30)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                await asyncio.to_thread(proc.process.wait)
        proc.sock.close()

    async def remove_variant(self, name: str) -> None:
        """Stop a variant's replicas and drop its route."""
        assert self.router is not None
        procs = self.procs.pop(name, [])
        self.router.table.variants.pop(name, None)
        self.router.table.set_weights(
            {v.name: v.weight for v in self.router.table.variants.values()}
        )
        await asyncio.gather(*(self._stop_proc(p) for p in procs), return_exceptions=True)
        self.publish_replicas()

    async def set_replicas(self, name: str, count: int) -> None:
        """Start or stop replicas of a variant until it has ``count``."""
        assert self.router is not None
        procs = [p for p in self.procs.get(name, []) if not p.retiring]
        if not procs:
            return
        if count > len(procs):
            started = [
                self._spawn_new(
                    name,
                    procs[0].model_version_id,
                    procs[0].shadow,
                    multi_model=procs[0].multi_model,
                )
                for _ in range(count - len(procs))
            ]
            # Only the new replicas: one of the others restarting meanwhile is not a failure
            # of the scale-out (the watcher brings it back).
            await self.wait_ready([name], only=started)
        elif count < len(procs):
            extra = procs[count:]
            route = self.router.table.variants[name]
            for p in extra:
                p.retiring = True
                p.replica.ready = False
            await asyncio.gather(*(self._stop_proc(p) for p in extra), return_exceptions=True)
            self.procs[name] = [p for p in self.procs[name] if p not in extra]
            route.replicas = [r for r in route.replicas if all(r is not p.replica for p in extra)]
        self.publish_replicas()

    async def _watch(self) -> None:
        """Restart replicas that exited; bring back ones the router took out."""
        while not self._stopping:
            for procs in list(self.procs.values()):
                for p in procs:
                    if p.retiring:
                        continue
                    if p.process is not None and p.process.poll() is not None:
                        await self._restart(p)
                    elif not p.replica.ready:
                        await self._probe(p)
            await asyncio.sleep(self.poll_seconds)

    async def _restart(self, proc: ReplicaProcess) -> None:
        proc.replica.ready = False
        code = proc.process.returncode if proc.process is not None else None
        if not proc.last_exit or time.monotonic() - proc.last_exit > 60:
            attempt = 0
        else:
            attempt = min(proc.restarts, len(RESTART_BACKOFF) - 1)
        proc.last_exit = time.monotonic()
        await asyncio.sleep(RESTART_BACKOFF[attempt])
        if self._stopping or proc.retiring:
            return
        proc.restarts += 1
        log.warning(
            "replica of %s (pid %s) exited with %s; restarting",
            proc.variant,
            proc.process.pid if proc.process else None,
            code,
        )
        self._spawn(proc)
        assert self.router is not None
        self.router.metrics.restarts.labels(self.name, proc.variant).inc()
        await asyncio.to_thread(
            self._event,
            "replica-restart",
            proc.variant,
            {
                "exit_code": code,
                "port": proc.port,
                "pid": proc.process.pid if proc.process else None,
            },
        )

    def _event(self, kind: str, variant: str, detail: dict[str, Any]) -> None:
        with self.ws.metadata.write() as conn:
            sql.add_event(conn, self.endpoint_id, kind, variant, detail)

    # -- the control loop: deployments, autoscaling, figures -----------------------------------

    async def _control(self) -> None:
        last_persist = 0.0
        last_scale = 0.0
        while not self._stopping:
            try:
                if not self._deploying:
                    dep = await asyncio.to_thread(self._next_deployment)
                    if dep is not None:
                        self._deploying = True
                        try:
                            await Rollout(self, dep).run()
                        finally:
                            self._deploying = False
                self._sample_inflight()
                if not self._deploying and time.monotonic() - last_scale >= 2.0:
                    last_scale = time.monotonic()
                    await self._autoscale()
                if time.monotonic() - last_persist >= 2.0:
                    last_persist = time.monotonic()
                    self.publish_replicas()
                    await asyncio.to_thread(self._persist_runtime)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the supervisor of %s hit an error", self.name)
            await asyncio.sleep(0.25)

    def _next_deployment(self) -> dict[str, Any] | None:
        with self.ws.metadata.read() as conn:
            deps = [d for d in sql.open_deployments(conn, self.endpoint_id)]
        pending = [d for d in deps if d["outcome"] == "pending"]
        return pending[0] if pending else None

    def _sample_inflight(self) -> None:
        assert self.router is not None
        t = time.monotonic()
        for v in self.config.variants:
            route = self.router.table.variants.get(v.name)
            if route is not None and v.autoscaling is not None:
                inflight = sum(r.inflight for r in route.replicas)
                self._scaling.setdefault(v.name, _Scaling()).samples.append((t, inflight))

    async def _autoscale(self) -> None:
        """Target tracking on in-flight requests per replica, one action per cooldown."""
        t = time.monotonic()
        for v in self.config.variants:
            policy = v.autoscaling
            if policy is None:
                continue
            state = self._scaling.setdefault(v.name, _Scaling())
            window = [n for at, n in state.samples if at >= t - 30]
            if not window:
                continue
            current = len([p for p in self.procs.get(v.name, []) if not p.retiring])
            mean = float(np.mean(window))
            want = policy.desired(current, mean)
            if want > current and t - state.last_action >= policy.scale_out_cooldown_s:
                kind = "scale-out"
            elif want < current and t - state.last_action >= policy.scale_in_cooldown_s:
                kind = "scale-in"
                want = current - 1  # in one step at a time
            else:
                continue
            state.last_action = t
            detail: dict[str, Any] = {
                "from": current,
                "to": want,
                "mean_inflight": round(mean, 3),
                "target_inflight": policy.target_inflight,
            }
            # Recorded once the replicas have changed, so the event says what happened: a
            # scale-out whose new replicas did not come up carries the reason.
            try:
                await self.set_replicas(v.name, want)
            except DeploymentFailed as exc:
                log.warning("%s of %s/%s failed: %s", kind, self.name, v.name, exc)
                detail["error"] = str(exc)
            detail["replicas"] = len([p for p in self.procs.get(v.name, []) if not p.retiring])
            await asyncio.to_thread(self._event, kind, v.name, detail)

    def publish_replicas(self) -> None:
        """Set the replica gauges (counts by state, memory and CPU of each process)."""
        if self.router is None:
            return
        m = self.router.metrics
        for name, procs in self.procs.items():
            ready = sum(1 for p in procs if p.replica.ready)
            m.replicas.labels(self.name, name, "ready").set(ready)
            m.replicas.labels(self.name, name, "starting").set(len(procs) - ready)
            for p in procs:
                usage = _usage(p.process.pid) if p.alive() and p.process else None
                if usage is not None:
                    m.replica_rss.labels(self.name, name, str(p.process.pid)).set(usage[0])  # type: ignore[union-attr]
                    m.replica_cpu.labels(self.name, name, str(p.process.pid)).set(usage[1])  # type: ignore[union-attr]

    def _publish_weights(self) -> None:
        assert self.router is not None
        for name, share in self.router.table.weights().items():
            self.router.metrics.weights.labels(self.name, name).set(share)

    def runtime(self) -> dict[str, Any]:
        """Replicas and traffic figures, as stored on the endpoint record while it runs."""
        assert self.router is not None
        table = self.router.table
        variants = {}
        for name, route in table.variants.items():
            procs = self.procs.get(name, [])
            variants[name] = {
                "model_version": route.model_version,
                "shadow": route.shadow_percent is not None,
                "weight": round(table.weights().get(name, 0.0), 6),
                "replicas": [
                    {
                        "pid": p.process.pid if p.process else None,
                        "port": p.port,
                        "ready": p.replica.ready,
                        "restarts": p.restarts,
                        "served": p.replica.served,
                        **(
                            {
                                "models_loaded": p.replica.models_loaded,
                                "models_loaded_bytes": p.replica.models_loaded_bytes,
                            }
                            if p.multi_model is not None
                            else {}
                        ),
                    }
                    for p in procs
                ],
                "last_60s": self.router.stats.window(name, seconds=60).to_dict(),
                "total": self.router.stats.totals.get(name).to_dict()  # type: ignore[union-attr]
                if name in self.router.stats.totals
                else None,
            }
        return {
            "config_version": self.config_version,
            "deploying": self._deploying,
            "variants": variants,
            "shadows": {k: v.to_dict() for k, v in self.router.shadow_stats.items()},
            "updated_at": now(),
        }

    def _persist_runtime(self) -> None:
        if self.router is None:
            return
        with self.ws.metadata.write() as conn:
            sql.update_endpoint(conn, self.endpoint_id, runtime=self.runtime())


def _usage(pid: int) -> tuple[int, float] | None:
    """Resident bytes and CPU seconds of a process (Linux), or None."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            rss = int(fh.read().split()[1]) * _PAGE
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return None
    return rss, cpu


# -- deployments -----------------------------------------------------------------------------------


def mix(old: dict[str, float], new: dict[str, float], fraction: float) -> dict[str, float]:
    """Traffic shares ``fraction`` of the way from ``old`` to ``new``."""
    names = list(dict.fromkeys([*old, *new]))
    return {
        n: round((1 - fraction) * old.get(n, 0.0) + fraction * new.get(n, 0.0), 9) for n in names
    }


class Rollout:
    """One deployment, from the supervisor's current configuration to the target version."""

    def __init__(self, sup: Supervisor, deployment: dict[str, Any]) -> None:
        self.sup = sup
        self.dep = deployment
        self.steps: list[dict[str, Any]] = list(deployment.get("steps") or [])
        self.target = EndpointConfig.from_dict(deployment["config"]["endpoint"])
        self.policy = DeploymentPolicy.from_dict(deployment["config"]["policy"])
        self.added: list[str] = []
        self.resized: dict[str, int] = {}

    def _write(self, **values: Any) -> None:
        with self.sup.ws.metadata.write() as conn:
            sql.update_deployment(conn, self.dep["id"], steps=self.steps, **values)

    async def step(self, action: str, **detail: Any) -> None:
        """Record a step on the deployment's row."""
        self.steps.append({"at": round(now(), 3), "action": action, **detail})
        await asyncio.to_thread(self._write)

    async def run(self) -> None:
        """Carry the deployment out; roll back on any failed step or alarm."""
        sup = self.sup
        await asyncio.to_thread(self._write, outcome="in-progress")
        old = sup.config
        try:
            await self._provision(old)
            await self._smoke_test()
            new_shares = self.target.shares()
            old_shares = old.shares()
            watched = [n for n in self.added if n in new_shares and new_shares[n] > 0] or list(
                new_shares
            )
            for fraction in self.policy.traffic_steps():
                weights = mix(old_shares, new_shares, fraction)
                assert sup.router is not None
                sup.router.table.set_weights(weights)
                sup._publish_weights()
                await self.step(
                    "traffic", fraction=fraction, weights={k: v for k, v in weights.items() if v}
                )
                await self._bake(watched)
        except DeploymentFailed as exc:
            await self._roll_back(old, str(exc))
            return
        except asyncio.CancelledError:
            await self._roll_back(old, "the endpoint stopped during the deployment")
            raise
        except Exception as exc:
            log.exception("deployment %s failed", self.dep["id"])
            await self._roll_back(old, f"{type(exc).__name__}: {exc}")
            return
        await self._complete(old)

    async def _provision(self, old: EndpointConfig) -> None:
        sup = self.sup
        old_models = {v.name: v.model_version for v in old.all_variants()}
        old_sets = {v.name: v.multi_model for v in old.variants}
        t0 = time.monotonic()
        for v in self.target.all_variants():
            if v.name in old_models:
                if old_models[v.name] != v.model_version:
                    raise DeploymentFailed(
                        f"variant {v.name} serves {old_models[v.name]}; a new model version "
                        "needs a new variant name"
                    )
                if old_sets.get(v.name) != getattr(v, "multi_model", None):
                    raise DeploymentFailed(
                        f"variant {v.name} serves another multi-model set; new multi-model "
                        "settings need a new variant name"
                    )
                current = len(sup.procs.get(v.name, []))
                if v.replicas > current:
                    self.resized[v.name] = current
                    await sup.set_replicas(v.name, v.replicas)
                continue
            await sup.add_variant(v)
            self.added.append(v.name)
        if self.added:
            await sup.wait_ready(self.added)
        await self.step("provision", variants=self.added, seconds=round(time.monotonic() - t0, 3))

    async def _smoke_test(self) -> None:
        if not self.policy.smoke_test:
            return
        sup = self.sup
        for name in self.added:
            variant = self.target.variant(name)
            if isinstance(variant, ShadowVariant):
                continue
            body = await asyncio.to_thread(
                sup.ws.endpoints.smoke_rows, sup.name, variant.model_version
            )
            proc = sup.procs[name][0]
            headers = [
                (b"content-type", b"application/json"),
                (b"x-wellml-internal", sup.secret.encode()),
            ]
            if variant.multi_model is not None:
                headers.append((b"x-wellml-target-model", variant.model_version.encode()))
            try:
                resp = await proc.replica.client.request(
                    "POST", "/invocations", headers, body, timeout=30
                )
                status, text = resp.status, resp.body[:300].decode(errors="replace")
            except (TimeoutError, ReplicaUnavailable) as exc:
                status, text = 0, str(exc)
            await self.step("smoke-test", variant=name, status=status, passed=status == 200)
            if status != 200:
                raise DeploymentFailed(f"smoke test of {name} failed ({status}): {text}")

    async def _bake(self, watched: list[str]) -> None:
        sup = self.sup
        assert sup.router is not None
        stats = sup.router.stats
        start_clock = stats.now()
        start_wall = now()
        deadline = time.monotonic() + self.policy.bake_seconds
        next_capture = time.monotonic() + 2.0
        while True:
            for alarm in self.policy.alarms:
                if isinstance(alarm, CaptureMetricAlarm):
                    if time.monotonic() < next_capture and time.monotonic() < deadline:
                        continue
                    fired = await asyncio.to_thread(self._capture_alarm, alarm, watched, start_wall)
                else:
                    fired = self._traffic_alarm(alarm, watched, start_clock)
                if fired is not None:
                    await self.step("alarm", **fired)
                    raise DeploymentFailed(f"alarm {fired['alarm']}: {fired['message']}")
            if time.monotonic() >= next_capture:
                next_capture = time.monotonic() + 2.0
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        figures = {n: stats.window(n, since=start_clock).to_dict() for n in watched}
        await self.step(
            "bake",
            seconds=self.policy.bake_seconds,
            promotion="no alarm fired during the bake",
            figures=figures,
        )

    def _traffic_alarm(
        self, alarm: Alarm, watched: list[str], since: float
    ) -> dict[str, Any] | None:
        assert self.sup.router is not None
        for name in watched:
            w = self.sup.router.stats.window(name, since=since)
            if isinstance(alarm, ErrorRateAlarm):
                if w.requests < alarm.min_requests:
                    continue
                rate = w.error_rate(include_4xx=alarm.include_4xx)
                if rate >= alarm.max_rate and rate > 0:
                    return {
                        "alarm": "error_rate",
                        "variant": name,
                        "value": round(rate, 6),
                        "threshold": alarm.max_rate,
                        "requests": w.requests,
                        "message": f"{name} failed {rate:.1%} of {w.requests} requests "
                        f"(limit {alarm.max_rate:.1%})",
                    }
            elif isinstance(alarm, LatencyAlarm):
                if w.requests < alarm.min_requests:
                    continue
                from wellml.serving.metrics import percentile

                p99 = (percentile(w.latencies, 99) or 0.0) * 1000
                if p99 > alarm.p99_ms:
                    return {
                        "alarm": "latency",
                        "variant": name,
                        "value": round(p99, 3),
                        "threshold": alarm.p99_ms,
                        "requests": w.requests,
                        "message": f"{name} p99 latency {p99:.1f} ms (limit {alarm.p99_ms:g} ms)",
                    }
        return None

    def _capture_alarm(
        self, alarm: CaptureMetricAlarm, watched: list[str], since: float
    ) -> dict[str, Any] | None:
        values = self.sup.ws.endpoints.captured_values(
            self.sup.name, alarm.column, since=since, variants=watched
        )
        for name, column in values.items():
            if len(column) < alarm.min_rows:
                continue
            col = np.asarray(column, dtype=float)
            if alarm.statistic == "null_rate":
                value = float(np.mean(np.isnan(col)))
            else:
                finite = col[~np.isnan(col)]
                if not len(finite):
                    continue
                reduce = {"mean": np.mean, "min": np.min, "max": np.max}[alarm.statistic]
                value = float(reduce(finite))  # type: ignore[operator]
            low = alarm.min is not None and value < alarm.min
            high = alarm.max is not None and value > alarm.max
            if low or high:
                bound = f">= {alarm.min:g}" if low else f"<= {alarm.max:g}"
                return {
                    "alarm": "capture_metric",
                    "variant": name,
                    "value": round(value, 6),
                    "column": alarm.column,
                    "statistic": alarm.statistic,
                    "rows": len(column),
                    "message": f"{alarm.statistic} of captured {alarm.column} on {name} is "
                    f"{value:.4g}, outside {bound}",
                }
        return None

    async def _roll_back(self, old: EndpointConfig, reason: str) -> None:
        sup = self.sup
        assert sup.router is not None
        sup.router.table.set_weights({v.name: v.weight for v in old.variants})
        sup._publish_weights()
        for name in self.added:
            await sup.remove_variant(name)
        for name, count in self.resized.items():
            await sup.set_replicas(name, count)
        await self.step("rollback", weights=old.shares(), reason=reason)
        await asyncio.to_thread(self._finish, "rolled-back", reason, None)

    async def _complete(self, old: EndpointConfig) -> None:
        sup = self.sup
        if self.policy.termination_wait_seconds:
            await asyncio.sleep(self.policy.termination_wait_seconds)
        keep = {v.name for v in self.target.all_variants()}
        retired = [n for n in list(sup.procs) if n not in keep]
        for name in retired:
            await sup.remove_variant(name)
        for v in self.target.all_variants():
            if v.name in self.added:
                continue
            have = len(sup.procs.get(v.name, []))
            # An autoscaled variant keeps the count the autoscaler reached, within its bounds.
            scaling = getattr(v, "autoscaling", None)
            want = (
                min(max(have, scaling.min_replicas), scaling.max_replicas)
                if scaling is not None
                else v.replicas
            )
            if have != want:
                await sup.set_replicas(v.name, want)
        assert sup.router is not None
        sup.router.table.set_weights({v.name: v.weight for v in self.target.variants})
        sup._publish_weights()
        sup.router.config = self.target
        sup.config = self.target
        sup.config_version = int(self.dep["to_version"])
        await self.step("complete", retired=retired)
        await asyncio.to_thread(self._finish, "completed", None, self.target)

    def _finish(self, outcome: str, reason: str | None, applied: EndpointConfig | None) -> None:
        ws = self.sup.ws
        with ws.metadata.write() as conn:
            sql.update_deployment(conn, self.dep["id"], steps=self.steps)
            sql.end_deployment(conn, self.dep["id"], outcome, reason)
            if applied is not None:
                mv_id = ws.registry.get(applied.primary().model_version).id
                sql.update_endpoint(
                    conn,
                    self.sup.endpoint_id,
                    config=applied.to_dict(),
                    config_version=int(self.dep["to_version"]),
                    model_version_id=mv_id,
                )


__all__ = ["DeploymentFailed", "ReplicaProcess", "Rollout", "Supervisor", "mix"]
