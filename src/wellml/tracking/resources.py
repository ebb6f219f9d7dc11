"""What a run cost: wall time, CPU time, peak memory and an energy estimate.

Every tracked run is metered from ``start_run`` to its end, and the figures are stored as tags
of the run when it ends (tags, so that a run's metrics stay what the user logged):

=========================  ==================================================================
tag                        meaning
=========================  ==================================================================
``system.wall_time_s``     seconds from start to end
``system.cpu_time_s``      CPU seconds (user + system) of this process over the run, plus
                           child processes that ended and were waited for in that time
``system.peak_memory_mb``  the highest resident set size of this process seen during the run
``system.energy_wh``       estimated energy: ``cpu_time_s × WELLML_CPU_WATTS / 3600``
``system.cpu_watts``       the per-core power figure the estimate used
=========================  ==================================================================

The CPU and memory figures are of the process, so two runs active at the same time in one
process (threads, or a parent run around its children) each see both. Peak memory is exact when
the run raised the process's high-water mark (``getrusage``), and otherwise the highest of
samples taken every 50 ms while a run is active (``/proc/self/statm`` on Linux).

The energy estimate counts the CPU only: ``WELLML_CPU_WATTS`` is the power one busy core draws,
10 W by default, a middle figure for current laptop, desktop and server CPUs, whose thermal
design power divided by their core count lies between about 4 and 15 W. Set it to your CPU's
TDP divided by its core count for a better estimate.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from wellml.errors import InvalidInput

CPU_WATTS_ENV = "WELLML_CPU_WATTS"
DEFAULT_CPU_WATTS = 10.0
TAG_PREFIX = "system."
_SAMPLE_SECONDS = 0.05
_IDLE_SAMPLES = 20
_MB = 1024.0 * 1024.0


def cpu_watts() -> float:
    """The per-core power figure in watts: ``WELLML_CPU_WATTS``, or 10.

    Raises:
        InvalidInput: the variable is not a number > 0.
    """
    text = os.environ.get(CPU_WATTS_ENV, "").strip()
    if not text:
        return DEFAULT_CPU_WATTS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"{CPU_WATTS_ENV}={text!r}: give the watts one busy core draws (> 0)")
    return value


def energy_wh(cpu_seconds: float, watts: float) -> float:
    """Watt-hours drawn by ``cpu_seconds`` of CPU time at ``watts`` per busy core."""
    return cpu_seconds * watts / 3600.0


@dataclass(frozen=True)
class ResourceUsage:
    """The resources one run used."""

    wall_time_s: float
    cpu_time_s: float
    peak_memory_mb: float
    cpu_watts: float

    @property
    def energy_wh(self) -> float:
        """Estimated energy in watt-hours (CPU only)."""
        return energy_wh(self.cpu_time_s, self.cpu_watts)

    def to_dict(self) -> dict[str, float]:
        """Plain data for JSON output."""
        return {
            "wall_time_s": self.wall_time_s,
            "cpu_time_s": self.cpu_time_s,
            "peak_memory_mb": self.peak_memory_mb,
            "energy_wh": self.energy_wh,
            "cpu_watts": self.cpu_watts,
        }

    def to_tags(self) -> dict[str, str]:
        """The run tags that record it."""
        return {TAG_PREFIX + k: f"{v:.6g}" for k, v in self.to_dict().items()}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> ResourceUsage | None:
        """Read the figures back from a run's tags (None when the run has none)."""
        try:
            return cls(
                wall_time_s=float(tags[TAG_PREFIX + "wall_time_s"]),
                cpu_time_s=float(tags[TAG_PREFIX + "cpu_time_s"]),
                peak_memory_mb=float(tags[TAG_PREFIX + "peak_memory_mb"]),
                cpu_watts=float(tags[TAG_PREFIX + "cpu_watts"]),
            )
        except (KeyError, ValueError):
            return None


def _rss_bytes() -> int:
    """This process's resident set size now (its high-water mark where that is unknown)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _max_rss_bytes()


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return float(usage.ru_utime + usage.ru_stime)


class _PeakSampler:
    """One thread per process that samples memory while any meter is active."""

    def __init__(self) -> None:
        self._meters: set[ResourceMeter] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, meter: ResourceMeter) -> None:
        with self._lock:
            self._meters.add(meter)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="wellml-resource-sampler", daemon=True
                )
                self._thread.start()

    def remove(self, meter: ResourceMeter) -> None:
        with self._lock:
            self._meters.discard(meter)

    def _loop(self) -> None:
        idle = 0
        while True:
            with self._lock:
                meters = list(self._meters)
                idle = 0 if meters else idle + 1
                # Linger a little, so runs started one after another share one thread.
                if idle > _IDLE_SAMPLES:
                    self._thread = None
                    return
            if not meters:
                time.sleep(_SAMPLE_SECONDS)
                continue
            rss = _rss_bytes()
            for m in meters:
                m._observe(rss)
            time.sleep(_SAMPLE_SECONDS)


_SAMPLER = _PeakSampler()


class ResourceMeter:
    """Measures wall time, CPU time and peak memory from creation to :meth:`stop`.

    Raises:
        InvalidInput: ``WELLML_CPU_WATTS`` is set to something other than a number > 0.
    """

    def __init__(self, *, watts: float | None = None) -> None:
        self.watts = cpu_watts() if watts is None else float(watts)
        self._wall0 = time.perf_counter()
        self._cpu0 = time.process_time()
        self._children0 = _children_cpu()
        self._maxrss0 = _max_rss_bytes()
        self._peak = _rss_bytes()
        self._usage: ResourceUsage | None = None
        _SAMPLER.add(self)

    def _observe(self, rss: int) -> None:
        if rss > self._peak:
            self._peak = rss

    def stop(self) -> ResourceUsage:
        """Stop measuring and return the figures (the same ones on every later call)."""
        if self._usage is not None:
            return self._usage
        _SAMPLER.remove(self)
        self._observe(_rss_bytes())
        maxrss = _max_rss_bytes()
        # A high-water mark that rose during the run was reached during the run.
        peak = max(self._peak, maxrss) if maxrss > self._maxrss0 else self._peak
        cpu = (time.process_time() - self._cpu0) + max(0.0, _children_cpu() - self._children0)
        self._usage = ResourceUsage(
            wall_time_s=time.perf_counter() - self._wall0,
            cpu_time_s=cpu,
            peak_memory_mb=peak / _MB,
            cpu_watts=self.watts,
        )
        return self._usage

    def __enter__(self) -> ResourceMeter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def record_usage(run: Any, usage: ResourceUsage) -> None:
    """Record figures measured elsewhere (e.g. in the worker process that ran a tuning trial)
    on an active run, instead of what its own meter would measure in this process."""
    run.meter = None
    run.set_tags(usage.to_tags())
