"""Fixtures of the stage-directory tests: a stage directory on local disk or in the local S3 server."""

import pytest


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
