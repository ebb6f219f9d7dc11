"""What every write records about where it came from: code version, environment and user."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path


@dataclass(frozen=True)
class CodeVersion:
    """The git state of the code that did the work (all None outside a repository)."""

    repo: str | None
    commit: str | None
    dirty: bool | None


@dataclass(frozen=True)
class Environment:
    """The Python environment that did the work; ``id`` hashes everything else."""

    id: str
    python: str
    platform: str
    packages: dict[str, str]


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        # `git status` refreshes the index and takes its lock unless told not to; reading the
        # state must never block a user's own git command in the same repository.
        env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
        out = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def _code_version(cwd: Path) -> CodeVersion:
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    if top is None:
        return CodeVersion(None, None, None)
    commit = _git(["rev-parse", "HEAD"], cwd)
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return CodeVersion(top, commit, None if status is None else bool(status))


def code_version(cwd: Path | None = None) -> CodeVersion:
    """The git commit and dirty flag of ``cwd`` (default: the current folder).

    Cached per folder for the life of the process: a long process keeps the code it started
    with, and asking git on every write would cost more than the write.
    """
    return _code_version((cwd or Path.cwd()).resolve())


@functools.cache
def environment() -> Environment:
    """The interpreter and installed distributions, hashed into a stable id."""
    packages: dict[str, str] = {}
    for dist in importlib_metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name.lower().replace("_", "-")] = dist.version
    packages = dict(sorted(packages.items()))
    py = platform.python_version()
    plat = f"{sys.platform}-{platform.machine()}"
    blob = json.dumps({"python": py, "platform": plat, "packages": packages}, sort_keys=True)
    env_id = hashlib.sha256(blob.encode()).hexdigest()
    return Environment(env_id, py, plat, packages)
