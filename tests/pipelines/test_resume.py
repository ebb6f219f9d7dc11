"""Resume: a run killed with SIGKILL keeps its finished steps, is marked interrupted, and
running it again continues from where it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.pipelines.conftest import REPO_ROOT, executions
from wellml.errors import Conflict
from wellml.workspace import Workspace

_VICTIM = textwrap.dedent("""
    import sys
    from tests.pipelines import sample_steps
    from wellml.workspace import Workspace

    ws = Workspace.open(sys.argv[1])
    ws.pipelines.run(sample_steps.resumable, {"marker_dir": sys.argv[2]}, executor=sys.argv[3])
""")


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the pipeline process exited early with {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.05)


def _no_process_running(script: Path, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(script).encode() in cmdline.read_bytes():
                    alive.append(cmdline)
            except OSError:
                continue
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("executor", ["local", "process"])
def test_a_killed_run_resumes_from_its_last_completed_step(
    workspace: Workspace, markers: Path, tmp_path: Path, executor: str
) -> None:
    (markers / "hold").touch()
    script = tmp_path / "victim.py"
    script.write_text(_VICTIM)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(workspace.root), str(markers), executor],
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        _wait_for(markers / "third.started", proc)
        (running,) = workspace.pipelines.list()
        assert running.status == "running"
        assert [st.status for st in running.steps] == ["completed", "completed", "pending"]
        with pytest.raises(Conflict, match="still running"):
            workspace.pipelines.resume(running.id)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # Worker processes of the killed run end with it instead of lingering.
    assert _no_process_running(script, within=10)
    killed = workspace.pipelines.get(running.id)
    assert killed.status == "interrupted"
    assert f"process {proc.pid}" in (killed.error or "")
    assert [st.status for st in killed.steps] == ["completed", "completed", "not-run"]

    (markers / "hold").unlink()
    resumed = workspace.pipelines.resume(killed.id)
    assert resumed.status == "completed" and resumed.resumed_from == killed.id
    assert [st.status for st in resumed.steps] == ["cached", "cached", "completed"]
    assert workspace.pipelines.load_output(resumed, "third") == 3
    # Finished work was not done again; the step that was cut off was.
    assert executions(markers, "first") == 1 and executions(markers, "second") == 1
    assert executions(markers, "third") == 2
