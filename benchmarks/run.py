"""Run every benchmark script in this folder, one after another (``make bench``).

A benchmark script is any ``*.py`` here except this file and helpers whose names start with
``_``. Arguments (e.g. ``--quick``) are passed on to each script.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """The benchmark scripts, by name."""
    here = Path(__file__).resolve()
    return sorted(p for p in HERE.glob("*.py") if p != here and not p.name.startswith("_"))


def main() -> int:
    """Run each script with this interpreter; exit non-zero when any of them failed."""
    failed = []
    for script in scripts():
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script), *sys.argv[1:]]).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
