"""pipeline.stagedir.lock: DirectoryLock against another process, alive or dead, on local disk and on S3."""

import json
import os
import re
import signal
import socket

import pytest
from lock_holder import hold_lock

from thresher.pipeline.config import ConfigError
from thresher.pipeline.stagedir import LOCK_FILE, storage
from thresher.pipeline.stagedir.lock import DirectoryLock, _delete_if_unchanged


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


@pytest.mark.parametrize("make, why", [
    (lambda path: path.write_text("locked by nightly-sync job 981\n"), "it holds 'locked by nightly-sync job 981'"),
    (lambda path: path.symlink_to(path.parent.parent / "elsewhere.txt"), "it is a symbolic link or a directory"),
    (lambda path: path.mkdir(), "it is a symbolic link or a directory"),
])
def test_a_lock_file_thresher_did_not_write_is_refused_and_left_as_it_was(tmp_path, make, why):
    (tmp_path / "elsewhere.txt").write_text("a user's file the lock links to\n")
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / LOCK_FILE
    make(path)
    before = path.read_text() if path.is_file() else None
    with pytest.raises(ConfigError, match=rf"^{path} is not a lock thresher wrote \({re.escape(why)}\): move it away"):
        with DirectoryLock(tmp_path / "run"):
            pass
    assert (path.read_text() if path.is_file() else None) == before
    assert path.exists() or path.is_symlink()
    assert (tmp_path / "elsewhere.txt").read_text() == "a user's file the lock links to\n"


def test_a_lock_naming_another_host_is_not_taken_over_without_a_word(tmp_path):
    (tmp_path / "run").mkdir()
    other = {"host": "worker-17.cluster", "pid": 4242, "started": "2026-12-01T00:00:00+00:00"}
    (tmp_path / "run" / LOCK_FILE).write_text(json.dumps(other))
    with pytest.raises(ConfigError, match=r"in use by another thresher run \(host worker-17.cluster, pid 4242, .*"
                                          rf"if that run is dead, delete {tmp_path}/run/{LOCK_FILE}$"):
        with DirectoryLock(tmp_path / "run"):
            pass
    assert json.loads((tmp_path / "run" / LOCK_FILE).read_text()) == other


@pytest.mark.timeout(120)
def test_a_stage_directory_inside_a_run_another_process_writes_is_refused(tmp_path):
    holder = hold_lock(tmp_path / "run")
    try:
        with pytest.raises(ConfigError, match=rf"^{tmp_path}/run/tag is inside {tmp_path}/run, which another thresher "
                                               rf"run is writing \(host .*pid {holder.pid}"):
            with DirectoryLock(tmp_path / "run" / "tag"):
                pass
        assert not (tmp_path / "run" / "tag").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with DirectoryLock(tmp_path / "run"), DirectoryLock(tmp_path / "run" / "tag"):  # the run's own stages: allowed
        pass


# On an object store the lock is an object created only if absent (S3's If-None-Match: *).


@pytest.mark.timeout(120)
def test_a_lock_on_s3_is_refused_while_another_run_holds_it_and_released_on_exit(s3_url):
    fs, root = storage(s3_url)
    holder = hold_lock(s3_url)
    try:
        with pytest.raises(ConfigError, match=rf"^{s3_url} is in use by another thresher run \(host {socket.gethostname()}, "
                                               rf"pid {holder.pid}, started 20\d\d-.*\): wait for it to finish, or use "
                                               rf"another --output; if that run is dead, delete {s3_url}/_LOCK$"):
            with DirectoryLock(s3_url):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not fs.exists(f"{root}/{LOCK_FILE}")  # removed by its holder on release
    with DirectoryLock(s3_url), DirectoryLock(s3_url):  # free again; re-entered by its holder
        assert json.loads(fs.cat_file(f"{root}/{LOCK_FILE}"))["pid"] == os.getpid()
    fs.invalidate_cache(root)
    assert not fs.exists(f"{root}/{LOCK_FILE}")


@pytest.mark.timeout(120)
def test_an_s3_lock_of_a_dead_process_on_this_host_is_taken_over_and_one_from_elsewhere_is_not(s3_url):
    fs, root = storage(s3_url)
    dead = hold_lock(s3_url, then="die")
    assert dead.returncode == -signal.SIGKILL
    fs.invalidate_cache(root)
    assert json.loads(fs.cat_file(f"{root}/{LOCK_FILE}"))["pid"] == dead.pid  # no kernel released it
    with DirectoryLock(s3_url):
        assert json.loads(fs.cat_file(f"{root}/{LOCK_FILE}"))["pid"] == os.getpid()
    elsewhere = {"host": "another-host", "pid": dead.pid, "started": "2026-01-01T00:00:00+00:00"}
    fs.pipe_file(f"{root}/{LOCK_FILE}", json.dumps(elsewhere).encode())
    with pytest.raises(ConfigError, match=r"\(host another-host, pid \d+, started 2026-01-01T00:00:00\+00:00\)"):
        with DirectoryLock(s3_url):
            pass
    assert json.loads(fs.cat_file(f"{root}/{LOCK_FILE}")) == elsewhere


def test_taking_over_a_stale_lock_never_deletes_one_created_since_it_was_read(s3_url):
    fs, root = storage(s3_url)
    path = f"{root}/{LOCK_FILE}"
    fs.pipe_file(path, b'{"pid": 1}')
    stale = fs.info(path)["ETag"]
    fs.pipe_file(path, b'{"pid": 2}')  # a faster run took the stale lock over and holds it now
    _delete_if_unchanged(fs, path, stale)
    assert fs.cat_file(path) == b'{"pid": 2}'
    _delete_if_unchanged(fs, path, fs.info(path)["ETag"])
    assert not fs.exists(path)
