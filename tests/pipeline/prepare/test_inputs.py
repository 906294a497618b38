import gzip

import fsspec
import pytest

from thresher.pipeline.prepare.inputs import expand_inputs, open_input, warc_name
from thresher.pipeline.prepare.warc import WarcRecord, iter_records
from thresher.schemas.errors import InputError


@pytest.fixture
def warcs(tmp_path):
    for name in ("a.warc.gz", "b.warc.gz", "c.arc.gz", "notes.md"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_paths_globs_and_directories(warcs):
    a, b, c = (str(warcs / n) for n in ("a.warc.gz", "b.warc.gz", "c.arc.gz"))
    assert expand_inputs([a]) == [a]
    assert expand_inputs([str(warcs / "*.warc.gz")]) == [a, b]
    assert expand_inputs([str(warcs)]) == [a, b, c]
    # Repeats are dropped, order is kept.
    assert expand_inputs([b, a, b]) == [b, a]


def test_listing_files_relative_to_prefix_or_listing(warcs):
    listing = warcs / "inputs.txt"
    listing.write_text("# local files\na.warc.gz\n\nb.warc.gz\n")
    assert expand_inputs([str(listing)], path_prefix="") == [str(warcs / "a.warc.gz"), str(warcs / "b.warc.gz")]
    cc = warcs / "warc.paths.gz"
    cc.write_bytes(gzip.compress(b"crawl-data/CC-MAIN-2024-22/segments/1/warc/x-00000.warc.gz\n"))
    assert expand_inputs([str(cc)], path_prefix="https://data.commoncrawl.org/") == [
        "https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-22/segments/1/warc/x-00000.warc.gz"
    ]


def test_urls_pass_through_unchecked():
    url = "https://data.commoncrawl.org/crawl-data/x/y.warc.gz"
    assert expand_inputs([url]) == [url]
    assert warc_name(url + "?sig=abc") == "y.warc.gz"


@pytest.mark.parametrize(
    "argument, message",
    [("/no/such/file.warc.gz", "does not exist"), ("/no/such/*.warc.gz", "matches no file")],
)
def test_missing_local_inputs_are_clear_errors(argument, message):
    with pytest.raises(InputError, match=message):
        expand_inputs([argument])


def test_listing_naming_a_missing_file_is_an_error(tmp_path):
    listing = tmp_path / "inputs.txt"
    listing.write_text("gone.warc.gz\n")
    with pytest.raises(InputError, match="gone.warc.gz"):
        expand_inputs([str(listing)], path_prefix="")


def test_same_file_name_twice_is_refused(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "part.warc.gz").write_bytes(b"x")
    with pytest.raises(InputError, match="share the file name"):
        expand_inputs([str(tmp_path / "x/part.warc.gz"), str(tmp_path / "y/part.warc.gz")])


def test_fsspec_urls_stream_records(shared_data):
    url = "memory://bucket/cc-main-2020-34-sample.warc.gz"
    with fsspec.open(url, "wb") as handle:
        handle.write((shared_data / "warc/cc-main-2020-34-sample.warc.gz").read_bytes())
    (found,) = expand_inputs(["memory://bucket/*.warc.gz"])
    assert warc_name(found) == "cc-main-2020-34-sample.warc.gz"
    with open_input(found) as raw:
        records = [r for r in iter_records(raw, 1_000_000) if isinstance(r, WarcRecord)]
    assert sum(r.kind == "response" for r in records) == 16


@pytest.fixture
def special_files(tmp_path):
    """A directory holding one real WARC, a FIFO and links to endless devices, all named like WARCs."""
    import os

    directory = tmp_path / "crawl"
    directory.mkdir()
    (directory / "a.warc").write_bytes(b"")
    os.mkfifo(directory / "fifo.warc")
    (directory / "zero.warc").symlink_to("/dev/zero")
    (directory / "random.warc.gz").symlink_to("/dev/urandom")
    return directory


@pytest.mark.timeout(60)
def test_special_files_named_explicitly_are_refused_up_front(special_files):
    for name, kind in (("fifo.warc", "FIFO"), ("zero.warc", "character device"), ("random.warc.gz", "character device")):
        with pytest.raises(InputError, match=f"{name}.* is a {kind}, not a regular file"):
            expand_inputs([str(special_files / name)])
    listing = special_files / "inputs.txt"
    listing.write_text("a.warc\nzero.warc\n")
    with pytest.raises(InputError, match="zero.warc', which is a character device"):
        expand_inputs([str(listing)])


@pytest.mark.timeout(60)
def test_special_files_in_a_directory_or_glob_are_passed_on_and_refused_when_opened(special_files):
    names = ["a.warc", "fifo.warc", "random.warc.gz", "zero.warc"]
    assert expand_inputs([str(special_files)]) == [str(special_files / n) for n in names]
    assert expand_inputs([str(special_files / "*.warc*")]) == [str(special_files / n) for n in names]
    with open_input(str(special_files / "a.warc")) as handle:
        assert handle.read() == b""
    for name in names[1:]:  # returns at once: a FIFO is not waited on, a device is not read
        with pytest.raises(InputError, match="not a regular file"):
            open_input(str(special_files / name))


@pytest.mark.timeout(60)
def test_input_identity_tells_versions_of_a_file_apart(tmp_path, special_files):
    from thresher.pipeline.prepare.inputs import input_identity

    path = tmp_path / "x.warc.gz"
    path.write_bytes(b"first version")
    first = input_identity(str(path))
    assert input_identity(str(path)) == first and first.startswith("local:13:")
    path.write_bytes(b"first version, completed")
    assert input_identity(str(path)) != first
    url = "memory://bucket/y.warc.gz"
    with fsspec.open(url, "wb") as handle:
        handle.write(b"remote")
    remote = input_identity(url)
    assert remote.startswith("remote:") and input_identity(url) == remote
    with fsspec.open(url, "wb") as handle:
        handle.write(b"remote, replaced")
    assert input_identity(url) != remote
    # Special files are never read (a FIFO would block): their identity says why they are unreadable.
    assert input_identity(str(special_files / "fifo.warc")).startswith("unreadable:InputError:")
    assert input_identity(str(special_files / "zero.warc")).startswith("unreadable:InputError:")


def test_s3_files_prefixes_globs_and_listings_on_s3_are_found_on_the_driver(s3_url, shared_data):
    """Inputs on an object store: a file, a prefix (with or without its slash), a glob, and a listing that is
    itself on S3 naming S3 URLs (absolute, or relative to the listing); each task then streams its file."""
    from thresher.pipeline.stagedir import storage

    fs, root = storage(s3_url)
    source = (shared_data / "warc/cc-main-2020-34-sample.warc.gz").read_bytes()
    for name in ("a.warc.gz", "b.arc.gz", "notes.md", "deeper/c.warc.gz"):
        fs.pipe_file(f"{root}/crawl/{name}", source)
    a, b, c = (f"{s3_url}/crawl/{name}" for name in ("a.warc.gz", "b.arc.gz", "deeper/c.warc.gz"))
    assert expand_inputs([a]) == [a]
    assert expand_inputs([f"{s3_url}/crawl/"]) == expand_inputs([f"{s3_url}/crawl"]) == [a, b]  # not recursive
    assert expand_inputs([f"{s3_url}/crawl/*.warc.gz"]) == [a]
    fs.pipe_file(f"{root}/lists/warc.paths", f"# on s3\n{b}\n../crawl/deeper/c.warc.gz\n".encode())
    fs.pipe_file(f"{root}/lists/cc.paths.gz", gzip.compress(b"deeper/c.warc.gz\n"))
    assert expand_inputs([f"{s3_url}/lists/warc.paths"]) == [b, c]
    assert expand_inputs([f"{s3_url}/lists/cc.paths.gz"], path_prefix=f"{s3_url}/crawl/") == [c]
    fs.pipe_file(f"{root}/empty/notes.md", b"x")
    with pytest.raises(InputError, match="holds no .warc"):
        expand_inputs([f"{s3_url}/empty/"])
    with open_input(c) as raw:
        records = [r for r in iter_records(raw, 1_000_000) if isinstance(r, WarcRecord)]
    assert sum(r.kind == "response" for r in records) == 16


def test_s3_input_identity_is_the_object_s_version_whoever_asks(s3_url):
    from thresher.pipeline.prepare.inputs import input_identity
    from thresher.pipeline.stagedir import storage

    fs, root = storage(s3_url)
    fs.pipe_file(f"{root}/x.warc.gz", b"first")
    url = f"{s3_url}/x.warc.gz"
    first = input_identity(url)
    fs.ls(root)  # a listing cached by the driver does not change what the identity says
    assert first.startswith("remote:") and input_identity(url) == first and '"size": "5"' in first
    fs.pipe_file(f"{root}/x.warc.gz", b"other")  # the same size, another content
    assert input_identity(url) != first
