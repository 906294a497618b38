"""pipeline.locations: every path a job names, as one absolute form on the driver."""

import os

import pytest

from thresher.pipeline.locations import is_local_master, is_url, resolve_location, under_any


def test_a_relative_local_path_becomes_absolute_from_the_working_directory_or_a_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_location("crawl/a.warc.gz") == str(tmp_path / "crawl" / "a.warc.gz")
    assert resolve_location("./out/../out/") == str(tmp_path / "out")  # normalized, no trailing slash
    assert resolve_location("crawl/*.warc.gz") == str(tmp_path / "crawl" / "*.warc.gz")  # a glob stays a glob
    assert resolve_location("lists/a.txt", "/etc/thresher") == "/etc/thresher/lists/a.txt"
    assert resolve_location("/data/a.warc.gz", "/etc/thresher") == "/data/a.warc.gz"  # absolute: as it is


def test_a_file_url_is_a_local_path_and_other_urls_stay_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_location("file:///data/a.warc.gz") == "/data/a.warc.gz"
    assert not is_url("file:///data/a.warc.gz")
    for url in ("s3://bucket/crawl/", "s3a://bucket/x", "hdfs:///out", "gs://b/c/../d", "https://data.commoncrawl.org/x"):
        assert is_url(url) and resolve_location(url) == url
    assert resolve_location("") == ""  # an unset path stays off


def test_symbolic_links_are_kept_so_a_path_stays_under_its_declared_mount(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "shared")
    assert resolve_location(str(tmp_path / "shared" / "x")) == str(tmp_path / "shared" / "x")


def test_shared_prefixes_match_whole_path_components():
    assert under_any("/mnt/shared/crawl/a.warc.gz", ["/mnt/shared"])
    assert under_any("/mnt/shared", ["/mnt/shared/"])
    assert not under_any("/mnt/shared2/a", ["/mnt/shared"])
    assert not under_any("/home/me/a", ["/mnt/shared", "/srv"])
    assert under_any("/home/me/a", ["/"])
    assert not under_any("/home/me/a", [])


@pytest.mark.parametrize(("master", "local"), [
    ("local", True), ("local[4]", True), ("local[*]", True), ("local[2,3]", True), ("local-cluster[2,1,1024]", True),
    ("spark://head:7077", False), ("yarn", False), ("k8s://https://api:6443", False),
])
def test_only_local_masters_run_every_executor_on_this_machine(master, local):
    assert is_local_master(master) is local


def test_a_url_is_fetched_once_per_version_and_a_local_path_is_itself(s3_url, tmp_path, monkeypatch):
    import fsspec

    from thresher.pipeline.locations import local_copy

    monkeypatch.setenv("THRESHER_FETCH_CACHE", str(tmp_path / "cache"))
    assert local_copy(str(tmp_path)) == str(tmp_path)
    s3 = fsspec.filesystem("s3")
    s3.pipe({f"{s3_url}/model/config.json": b'{"a": 1}', f"{s3_url}/model/sub/weights.bin": b"\x00" * 10})
    first = local_copy(f"{s3_url}/model")
    assert open(os.path.join(first, "config.json")).read() == '{"a": 1}'
    assert os.path.getsize(os.path.join(first, "sub", "weights.bin")) == 10
    assert local_copy(f"{s3_url}/model/") == first  # the same version: the same copy, nothing fetched again
    s3.pipe(f"{s3_url}/model/config.json", b'{"a": 2}')
    second = local_copy(f"{s3_url}/model")
    assert second != first and open(os.path.join(second, "config.json")).read() == '{"a": 2}'
    single = local_copy(f"{s3_url}/model/config.json")
    assert open(single).read() == '{"a": 2}' and not os.path.isdir(single)
    assert not [name for name in os.listdir(tmp_path / "cache") if name.startswith(".")]  # no partial copy left
    with pytest.raises(FileNotFoundError, match="does not exist"):
        local_copy(f"{s3_url}/missing")
