"""Local parallel jobs of the pipeline: results in order, errors raised, and no orphans when the parent is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sime_policy.pipeline.executors import ProcessExecutor, make_executor


def _square(x: int) -> int:
    return x * x


def _fail(x: int) -> int:
    raise ValueError(f"bad job {x}")


def test_jobs_run_in_parallel_processes_and_keep_their_order() -> None:
    executor = make_executor(None, parallel=2)
    assert isinstance(executor, ProcessExecutor) and "2 jobs at once" in executor.description
    assert executor.map(_square, [3, 1, 2]) == [9, 1, 4]
    with pytest.raises(ValueError, match="bad job"):
        executor.map(_fail, [1, 2])


def test_job_processes_end_when_the_pipeline_process_is_killed(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from sime_policy.pipeline.executors import ProcessExecutor

        def job(i):
            Path({str(pid_dir)!r}, str(os.getpid())).write_text("")
            time.sleep(120)

        if __name__ == "__main__":
            ProcessExecutor(2).map(job, [0, 1])
    """)
    (tmp_path / "parent.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while len(list(pid_dir.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        children = [int(p.name) for p in pid_dir.iterdir()]
        assert len(children) == 2, "the jobs did not start"
        parent.send_signal(signal.SIGKILL)                  # no Ctrl-C, no cleanup: the parent just vanishes
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        alive = children
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [pid for pid in alive if _alive(pid)]
        assert not alive, f"job processes {alive} outlived the killed pipeline"
    finally:
        if parent.poll() is None:
            parent.kill()
        for p in pid_dir.iterdir():
            if _alive(int(p.name)):
                os.kill(int(p.name), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
