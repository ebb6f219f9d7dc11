"""Liveness of the local processes that records name (runs, endpoint servers)."""

from __future__ import annotations

import os
import socket

#: This machine's name, as records of runs and servers store it.
HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host is alive (a zombie counts as dead)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process that its parent has not reaped yet still answers signal 0.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def died_here(host: str | None, pid: int | None) -> bool:
    """Whether a record's process ran on this host and has exited (records from other hosts,
    or without a pid, cannot be judged here and count as alive)."""
    return host == HOST and bool(pid) and not pid_alive(int(pid or 0))
