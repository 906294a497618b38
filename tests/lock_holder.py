"""A DirectoryLock held by another process, shared by the lock tests and the stage job tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def hold_lock(directory, then="wait"):
    """A subprocess that takes DirectoryLock(directory), then waits for stdin to close or kills itself."""
    action = "sys.stdin.read()" if then == "wait" else "os.kill(os.getpid(), signal.SIGKILL)"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from thresher.pipeline.stagedir.lock import DirectoryLock
        with DirectoryLock({str(directory)!r}):
            print("held", flush=True)
            {action}
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env)
    if then == "wait":
        assert holder.stdout.readline() == "held\n"
    else:
        holder.wait(timeout=60)
    return holder
