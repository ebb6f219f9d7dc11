"""Shared plumbing of the benchmarks: a peer's own venv, worker processes, the command line."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def installed(python: Path, package: str) -> str | None:
    """The version of ``package`` installed for ``python``, or None."""
    probe = f"import importlib.metadata as m; print(m.version({package!r}))"
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def pinned_python(
    venv: Path, package: str, version: str, label: str, extra: Sequence[str] = ()
) -> Path:
    """The interpreter of ``venv``, creating it or bringing ``package`` to ``version``.

    ``extra`` are further requirements installed beside the pinned package; ``label`` names
    the tool in the progress lines.
    """
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"]
        subprocess.run(pip, check=True)
    have = installed(python, package)
    if have != version:
        print(f"installing {package}=={version} (found {have})", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", f"{package}=={version}", *extra]
        subprocess.run(pip, check=True)
        have = installed(python, package)
    print(f"{label} {have} in {venv}", flush=True)
    return python


def worker_json(
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: str | Path,
    failure: str,
    tail: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Run a worker process in ``cwd``; return the last JSON line of its output.

    On a non-zero exit the worker's output goes to stderr (its last ``tail`` = (stdout,
    stderr) characters when given) and the script stops with ``failure`` and the exit code.
    """
    out = subprocess.run(list(command), capture_output=True, text=True, env=dict(env), cwd=cwd)
    if out.returncode != 0:
        if tail is None:
            sys.stderr.write(out.stdout + out.stderr)
        else:
            sys.stderr.write(out.stdout[-tail[0] :] + out.stderr[-tail[1] :])
        raise SystemExit(f"{failure} failed with exit code {out.returncode}")
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def command_line() -> str:
    """How this script was run, with paths inside the checkout made relative to it."""

    def short(path: str) -> str:
        try:
            return str(Path(path).absolute().relative_to(HERE.parent))
        except ValueError:
            return path

    return shlex.join([short(sys.executable), short(sys.argv[0]), *sys.argv[1:]])
