"""Fixtures of the stage-directory tests: a stage directory on local disk or in the local S3 server, and a
record of every rename or copy that S3 was asked for."""

import inspect

import pytest


@pytest.fixture
def copies_and_renames(monkeypatch) -> list[str]:
    """Every rename, move or copy asked of s3fs in this process, and every copy the S3 server carried out
    for any client (the server runs in this process: the Spark workers' requests reach it too)."""
    import s3fs
    from moto.s3.models import S3Backend

    calls: list[str] = []

    def recording(name, original):
        def record(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        async def record_async(*args, **kwargs):  # still a coroutine function, as fsspec's sync mirrors need
            calls.append(name)
            return await original(*args, **kwargs)
        return record_async if inspect.iscoroutinefunction(original) else record

    # The async methods s3fs's own sync ones call at call time (a patched sync method would lose s3fs's).
    for name in ("mv", "move", "rename", "_copy", "_cp_file", "_mv_file"):
        monkeypatch.setattr(s3fs.S3FileSystem, name, recording(name, getattr(s3fs.S3FileSystem, name)))
    for name in ("copy_object", "upload_part_copy"):
        monkeypatch.setattr(S3Backend, name, recording(f"server {name}", getattr(S3Backend, name)))
    return calls


@pytest.fixture(params=["local", "s3"])
def stage_url(request, tmp_path) -> str:
    """A stage directory not yet there: a local path, or a prefix in the test bucket (s3://...), where the
    test also fails if anything was renamed or copied."""
    if request.param == "local":
        yield str(tmp_path / "stage")
        return
    calls = request.getfixturevalue("copies_and_renames")
    yield request.getfixturevalue("s3_url") + "/stage"
    assert calls == [], f"renames or copies on S3: {calls}"
