"""What a benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory, load averages, system and Python of this machine."""
    cpu = ""
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "memory": memory,
        # Tail latencies on a shared machine depend on what else runs: the 1, 5 and 15 minute
        # load averages when the report is written.
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "system": platform.platform(),
        "python": platform.python_version(),
    }
