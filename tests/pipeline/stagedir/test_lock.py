"""pipeline.stagedir.lock: DirectoryLock against another process, alive or dead."""

import json
import os
import signal
import socket

import pytest
from lock_holder import hold_lock

from thresher.pipeline.config import ConfigError
from thresher.pipeline.stagedir import LOCK_FILE
from thresher.pipeline.stagedir.lock import DirectoryLock


@pytest.mark.timeout(120)
def test_a_held_lock_is_refused_naming_its_holder_and_released_on_exit(tmp_path):
    holder = hold_lock(tmp_path / "run")
    try:
        with pytest.raises(ConfigError, match=rf"run is in use by another thresher run \(host {socket.gethostname()}, "
                                               rf"pid {holder.pid}, started 20\d\d-.*\): wait for it") as error:
            with DirectoryLock(tmp_path / "run"):
                pass
        assert "\n" not in str(error.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # removed by its holder on release
    with DirectoryLock(tmp_path / "run"), DirectoryLock(tmp_path / "run"):  # free again; re-entered by its holder
        assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / "run").exists()  # the directory the lock created, left empty, is removed


@pytest.mark.timeout(120)
def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = hold_lock(tmp_path / "run", then="die")
    assert dead.returncode == -signal.SIGKILL
    stale = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
    assert stale["pid"] == dead.pid and stale["host"] == socket.gethostname()
    with DirectoryLock(tmp_path / "run"):
        assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / "run" / LOCK_FILE).exists()
