"""Multi-model variants: many model versions behind one endpoint, loaded on first use.

A request names its model version in ``X-Amzn-SageMaker-Target-Model`` (or
``x-wellml-target-model``) as ``name@version`` or ``name@alias``. Each replica of a multi-model
variant keeps the versions it has loaded in a least-recently-used cache under a memory budget:

* the size of a version is the size of its model file in the artifact store, known before the
  version is loaded, so room is made *before* loading and the budget holds even while several
  versions load at once (a skops file stores arrays uncompressed, so its size tracks the
  memory of the fitted arrays; an estimate, see docs/serving.md);
* a version larger than the whole budget is refused (507) without being loaded;
* concurrent first requests for one version load it once; the others wait for that load.

Only versions the variant's :class:`~wellml.serving.config.MultiModel` set allows, and only
approved ones, are served. Resolutions are kept for a few seconds, so an alias that moves or a
version that is rejected is noticed within that time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from wellml.errors import InvalidInput, PermissionDenied
from wellml.names import parse_ref
from wellml.serving.app import RequestError, ServedModel
from wellml.serving.config import MultiModel

if TYPE_CHECKING:
    from wellml.registry.service import ModelVersion
    from wellml.workspace import Workspace

log = logging.getLogger("wellml.serving")

T = TypeVar("T")
RESOLVE_TTL_SECONDS = 5.0


class ModelTooLarge(RequestError):
    """A model version that cannot fit in the variant's memory budget even alone (507)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 507)


@dataclass(frozen=True)
class Fetched(Generic[T]):
    """What :meth:`LoadedModels.get` returned: the value, whether this call loaded it (and
    how long that took), and the keys evicted to make room for it."""

    value: T
    loaded: bool = False
    load_seconds: float = 0.0
    evicted: tuple[str, ...] = ()


class LoadedModels(Generic[T]):
    """Values kept by key, least recently used first out, under a byte budget and an optional
    count limit. Every method runs on one event loop; loads run in worker threads.

    Args:
        on_load: called with the key and the :class:`Fetched` record of each load, whether
            or not the request that started it is still there to see it.
    """

    def __init__(
        self,
        *,
        budget_bytes: int,
        max_models: int | None = None,
        on_load: Callable[[str, Fetched[T]], None] | None = None,
    ) -> None:
        if budget_bytes < 1:
            raise InvalidInput("the memory budget must be positive")
        if max_models is not None and max_models < 1:
            raise InvalidInput("max_models must be at least 1")
        self.budget_bytes = budget_bytes
        self.max_models = max_models
        self._loaded: OrderedDict[str, tuple[int, T]] = OrderedDict()
        self._loading: dict[str, asyncio.Task[Fetched[T]]] = {}
        self._reserved: dict[str, int] = {}
        self.loads = 0
        self.evictions = 0
        self._on_load = on_load

    def keys(self) -> list[str]:
        """Loaded keys, least recently used first."""
        return list(self._loaded)

    def __contains__(self, key: object) -> bool:
        return key in self._loaded

    def __len__(self) -> int:
        return len(self._loaded)

    @property
    def loaded_bytes(self) -> int:
        """The summed size of the loaded values."""
        return sum(size for size, _ in self._loaded.values())

    def discard(self, key: str) -> bool:
        """Drop a loaded value (say, a version that was rejected); whether it was loaded."""
        return self._loaded.pop(key, None) is not None

    async def get(self, key: str, size: int, load: Callable[[], T]) -> Fetched[T]:
        """The value of ``key``, loading it with ``load`` (in a thread) on first use, after
        evicting least recently used values until ``size`` more bytes fit.

        Raises:
            ModelTooLarge: ``size`` alone exceeds the budget.
            Exception: whatever ``load`` raised (for every caller waiting on that load).
        """
        hit = self._loaded.get(key)
        if hit is not None:
            self._loaded.move_to_end(key)
            return Fetched(hit[1])
        task = self._loading.get(key)
        first = task is None
        if task is None:
            if size > self.budget_bytes:
                raise ModelTooLarge(
                    f"{key} needs {size} bytes, more than the whole memory budget of "
                    f"{self.budget_bytes} bytes; raise the budget or serve it on its own endpoint"
                )
            task = asyncio.create_task(self._load(key, size, load))
            task.add_done_callback(_retrieve)
            self._loading[key] = task
        # Shielded: a caller that goes away does not cancel the load others wait for.
        fetched = await asyncio.shield(task)
        return fetched if first else Fetched(fetched.value)

    async def _load(self, key: str, size: int, load: Callable[[], T]) -> Fetched[T]:
        try:
            evicted = await self._make_room(key, size)
            started = time.perf_counter()
            value = await asyncio.to_thread(load)
            seconds = time.perf_counter() - started
        finally:
            self._loading.pop(key, None)
            self._reserved.pop(key, None)
        self._loaded[key] = (size, value)
        self.loads += 1
        fetched = Fetched(value, True, seconds, evicted)
        if self._on_load is not None:
            self._on_load(key, fetched)
        return fetched

    async def _make_room(self, key: str, size: int) -> tuple[str, ...]:
        """Evict until ``size`` more bytes (and one more model) fit, counting the loads in
        flight that made room already; then hold that room for ``key``."""
        evicted: list[str] = []
        while True:
            held = sum(self._reserved.values())
            fits = self.loaded_bytes + held + size <= self.budget_bytes and (
                self.max_models is None or len(self._loaded) + len(self._reserved) < self.max_models
            )
            if fits:
                self._reserved[key] = size
                return tuple(evicted)
            if self._loaded:
                oldest, _ = self._loaded.popitem(last=False)
                evicted.append(oldest)
                self.evictions += 1
                continue
            # Only loads in flight stand in the way (size alone fits, so one holds room):
            # wait for one to finish, then evict it if need be.
            holding = [self._loading[k] for k in self._reserved if k in self._loading]
            await asyncio.wait(holding, return_when=asyncio.FIRST_COMPLETED)


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A failed load whose callers have all gone away is not an unhandled error.
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class Target:
    """The model version that answers one request, and what fetching it did."""

    served: ServedModel
    fetched: Fetched[ServedModel]

    def headers(self, loaded_count: int, loaded_bytes: int) -> dict[str, str]:
        """Response headers for the router: the version, and any load or evictions."""
        out = {
            "x-wellml-model-version": self.served.model_version,
            "x-wellml-models-loaded": str(loaded_count),
            "x-wellml-models-loaded-bytes": str(loaded_bytes),
        }
        if self.served.variant:
            out["x-wellml-variant"] = self.served.variant
        if self.fetched.loaded:
            out["x-wellml-model-loaded"] = f"{self.fetched.load_seconds:.6f}"
        if self.fetched.evicted:
            out["x-wellml-models-evicted"] = ",".join(self.fetched.evicted)
        return out


class TargetModels:
    """The model versions one multi-model replica serves: resolves a request's target, checks
    that the variant allows it and that it is approved, and loads it on first use."""

    def __init__(
        self,
        spec: MultiModel,
        *,
        resolve: Callable[[str], ModelVersion],
        size_of: Callable[[ModelVersion], int],
        build: Callable[[ModelVersion], ServedModel],
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        resolve_ttl: float = RESOLVE_TTL_SECONDS,
    ) -> None:
        self.spec = spec
        self.cache: LoadedModels[ServedModel] = LoadedModels(
            budget_bytes=spec.memory_budget_bytes,
            max_models=spec.max_models,
            on_load=self._on_loaded,
        )
        self._resolve = resolve
        self._size_of = size_of
        self._build = build
        self._on_event = on_event
        self._ttl = resolve_ttl
        self._resolved: dict[str, tuple[float, ModelVersion]] = {}
        self._sizes: dict[str, int] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def version(self, target: str) -> ModelVersion:
        """The allowed, approved version a target names.

        Raises:
            InvalidInput: the target is not ``name@version`` or ``name@alias`` (400).
            NotFound: no such model, version or alias (404).
            PermissionDenied: the variant does not serve it, or it is not approved (403).
        """
        target = target.strip()
        hit = self._resolved.get(target)
        if hit is not None and hit[0] > time.monotonic():
            mv = hit[1]
        else:
            ref = parse_ref(target, "target model")
            if ref.version is None and ref.alias is None:
                raise InvalidInput(
                    f"target model {target!r} names no version; send NAME@VERSION or NAME@ALIAS"
                )
            mv = await asyncio.to_thread(self._resolve, target)
            if len(self._resolved) > 10_000:
                self._resolved.clear()
            self._resolved[target] = (time.monotonic() + self._ttl, mv)
        if not self.spec.allows(mv.name, mv.version):
            raise PermissionDenied(
                f"{mv.ref} is not served by this endpoint; it serves " + ", ".join(self.spec.models)
            )
        if mv.status != "approved":
            if self.cache.discard(mv.ref):
                self._emit("model-unload", {"model_version": mv.ref, "reason": mv.status})
            raise PermissionDenied(f"{mv.ref} is {mv.status}; only approved versions are served")
        return mv

    async def get(self, target: str) -> Target:
        """The served model a target names, loaded if need be (see :meth:`version`).

        Raises:
            ModelTooLarge: the version does not fit in the budget (507).
        """
        mv = await self.version(target)
        size = self._sizes.get(mv.ref)
        if size is None:
            size = self._sizes[mv.ref] = await asyncio.to_thread(self._size_of, mv)
        fetched = await self.cache.get(mv.ref, size, lambda: self._build(mv))
        return Target(fetched.value, fetched)

    def _on_loaded(self, ref: str, fetched: Fetched[ServedModel]) -> None:
        for old in fetched.evicted:
            self._emit(
                "model-evict", {"model_version": old, "bytes": self._sizes.get(old), "for": ref}
            )
        self._emit(
            "model-load",
            {
                "model_version": ref,
                "bytes": self._sizes.get(ref),
                "seconds": round(fetched.load_seconds, 6),
                "loaded": len(self.cache),
                "loaded_bytes": self.cache.loaded_bytes,
            },
        )

    def _emit(self, kind: str, detail: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        task = asyncio.create_task(self._record(kind, detail))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record(self, kind: str, detail: dict[str, Any]) -> None:
        assert self._on_event is not None
        try:
            await asyncio.to_thread(self._on_event, kind, detail)
        except Exception:
            log.exception("could not record %s event", kind)


def model_file_size(ws: Workspace, mv: ModelVersion) -> int:
    """The size in bytes of a version's model file: what it counts against a budget."""
    from wellml.registry.service import MODEL_FILE

    return ws.artifacts.size(ws.registry.package(mv)["files"][MODEL_FILE])


def load_uncached(ws: Workspace, mv: ModelVersion) -> Any:
    """A version's fitted model, read afresh. The registry keeps every model it loads for the
    life of the process; a budgeted cache has to be able to let one go.

    Raises:
        NotFound, IntegrityError, PermissionDenied, InvalidInput: as the file is read.
    """
    from wellml.registry.packaging import load_model
    from wellml.registry.service import MODEL_FILE

    digest = ws.registry.package(mv)["files"][MODEL_FILE]
    return load_model(ws.artifacts.get_bytes(digest))


__all__ = [
    "Fetched",
    "LoadedModels",
    "ModelTooLarge",
    "Target",
    "TargetModels",
    "load_uncached",
    "model_file_size",
]
