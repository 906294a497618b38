"""Input arguments -> the list of WARC files to read, checked before any Spark work starts.

An argument is a WARC/ARC/WET path or URL, a glob, a directory, or a listing file (`.txt`, `.lst`,
`.paths`, `.paths.gz`: one path per line, as Common Crawl's `warc.paths.gz`). Each may be local or at
any fsspec URL (s3://bucket/crawl/, s3://bucket/crawl/*.warc.gz, a listing on s3 naming s3 URLs): the
driver lists them here, and each task streams its file through fsspec (`open_input`). Relative entries
of a listing are joined to `path_prefix` (e.g. https://data.commoncrawl.org/), or else to the listing's
own directory. Local paths that do not exist are an error here; remote files are opened only by the
tasks, where a failure is a reject.

Only regular files are inputs: a FIFO would block the reader forever and a device (`/dev/zero`)
never ends. Named explicitly (or in a listing), one is refused here; found in a directory or by a
glob, it is passed on and `open_input` refuses it, so it becomes that file's `warc_unreadable` reject.
"""

from __future__ import annotations

import fcntl
import glob
import gzip
import hashlib
import io
import json
import os
import posixpath
import stat
from pathlib import PurePosixPath

from thresher.pipeline.locations import is_url
from thresher.schemas.errors import InputError

LISTING_SUFFIXES = (".paths", ".paths.gz", ".txt", ".txt.gz", ".lst")
_IDENTITY_HEAD_BYTES = 1 << 16  # hashed into a local file's identity, beside its size and mtime
# What tells one version of a remote file from another, as filesystems name it (S3, GCS, Azure, HTTP, memory).
_VERSION_KEYS = ("size", "ETag", "etag", "VersionId", "generation", "md5Hash", "LastModified", "last_modified",
                 "updated", "mtime", "created")
ARCHIVE_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".wet", ".wet.gz", ".wat", ".wat.gz")


def expand_inputs(arguments: list[str], path_prefix: str = "") -> list[str]:
    """Every WARC file named by `arguments`, in order, without repeats.

    Document ids hash the file's base name, so two different files with one base name are refused.
    """
    files: list[str] = []
    for argument in arguments:
        files.extend(_expand_one(argument, path_prefix))
    if not files:
        raise InputError("no input files: name WARC files, globs, directories or listing files")
    unique = list(dict.fromkeys(files))
    by_name: dict[str, str] = {}
    for path in unique:
        name = warc_name(path)
        if name in by_name:
            raise InputError(
                f"two inputs share the file name {name!r} ({by_name[name]} and {path}): "
                "document ids are derived from the file name, so names must be unique"
            )
        by_name[name] = path
    return unique


def warc_name(path: str) -> str:
    """The file's base name, the part of its location that document ids depend on."""
    return PurePosixPath(path.rstrip("/").split("?", 1)[0]).name


def _expand_one(argument: str, path_prefix: str) -> list[str]:
    local = argument.removeprefix("file://")
    if any(ch in argument for ch in "*?["):
        matches = _glob(argument)
        if not matches:
            raise InputError(f"input pattern {argument!r} matches no file")
        files = []
        for match in matches:
            # A special file among the matches is passed on, to be refused by its task, as in a directory.
            files.extend(_expand_one(match, path_prefix) if _is_regular_or_dir(match) else [os.path.abspath(match)])
        return files
    if is_url(argument):
        if argument.endswith(LISTING_SUFFIXES):
            return _read_listing(argument, path_prefix)
        if argument.rstrip("/").endswith(ARCHIVE_SUFFIXES):
            return [argument]  # a file: opened by its task alone, where a failure is a reject
        return _url_directory(argument) or [argument]
    if os.path.isdir(local):
        found = sorted(
            os.path.join(local, name) for name in os.listdir(local) if name.endswith(ARCHIVE_SUFFIXES)
        )
        if not found:
            raise InputError(f"input directory {argument!r} holds no .warc/.arc/.wet files")
        return found
    _check_regular(local, f"input file {argument!r}")
    if local.endswith(LISTING_SUFFIXES):
        return _read_listing(local, path_prefix)
    return [os.path.abspath(local)]


def _url_directory(url: str) -> list[str]:
    """The archives directly under `url` when it names a directory (a prefix, on an object store), in name
    order; [] when it names none. Asked only of a URL without an archive's suffix: an HTTP filesystem
    would read a whole file to tell it from a directory."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    path = path.rstrip("/")
    fs.invalidate_cache(path)
    if not fs.isdir(path):
        return []
    found = sorted(name for name in fs.ls(path, detail=False) if name.rstrip("/").endswith(ARCHIVE_SUFFIXES))
    if not found:
        raise InputError(f"input directory {url!r} holds no .warc/.arc/.wet files")
    return [fs.unstrip_protocol(name.rstrip("/")) for name in found]


def _glob(pattern: str) -> list[str]:
    if is_url(pattern):
        import fsspec

        fs, _, _ = fsspec.get_fs_token_paths(pattern)
        return sorted(fs.unstrip_protocol(p) for p in fs.glob(pattern))
    return sorted(glob.glob(pattern.removeprefix("file://")))


def _read_listing(path: str, path_prefix: str) -> list[str]:
    raw = _read_bytes(path)
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    entries = []
    for line in io.StringIO(raw.decode("utf-8")):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if not is_url(entry) and not os.path.isabs(entry):
            if path_prefix:
                entry = path_prefix.rstrip("/") + "/" + entry
            elif is_url(path):  # no prefix: relative to the listing file's directory, at its URL too
                scheme, _, listed_at = path.partition("://")
                entry = f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(listed_at), entry))}"
            else:
                entry = os.path.join(os.path.dirname(os.path.abspath(path)), entry)
        entries.append(entry)
    if not entries:
        raise InputError(f"listing file {path!r} names no files")
    # Entries are files to read, not patterns or listings: check local ones as for direct arguments.
    for entry in entries:
        if not is_url(entry):
            _check_regular(entry.removeprefix("file://"), f"listing file {path!r} names {entry!r}, which")
    return entries


def _special_kind(path: str) -> str | None:
    """What the file at `path` is when it is not a regular file ("FIFO", ...); None for a regular one.

    Links are followed: a link to /dev/zero is a character device. Raises FileNotFoundError.
    """
    return _kind_of(os.stat(path).st_mode)


def _kind_of(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _is_regular_or_dir(path: str) -> bool:
    try:
        return _special_kind(path) in (None, "directory")
    except OSError:
        return True  # left to the path's own check, which names what is wrong


def _check_regular(path: str, what: str) -> None:
    try:
        kind = _special_kind(path)
    except FileNotFoundError:
        raise InputError(f"{what} does not exist") from None
    except OSError as exc:
        raise InputError(f"{what} cannot be read: {exc.strerror}") from None
    if kind is not None:
        raise InputError(f"{what} is a {kind}, not a regular file: name WARC/ARC/WET files only")


def _read_bytes(path: str) -> bytes:
    if is_url(path):
        import fsspec

        with fsspec.open(path, "rb") as handle:
            return handle.read()
    with open(path, "rb") as handle:
        return handle.read()


def open_input(path: str):
    """A binary stream of `path`: local files directly, URLs through fsspec (streamed, not downloaded)."""
    if is_url(path):
        import fsspec

        return fsspec.open(path, "rb").open()
    # Non-blocking, so that opening a FIFO returns at once and is refused instead of waiting for a writer.
    fd = os.open(path.removeprefix("file://"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        kind = _kind_of(os.fstat(fd).st_mode)
        if kind is not None:
            raise InputError(f"{path} is a {kind}, not a regular file: only regular files are read")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def input_identity(path: str) -> str:
    """What tells this version of the input `path` from another: size, mtime and a SHA-1 of the first
    64 KiB for a local file; for a remote one, the properties its store gives of each version (size, ETag,
    version id, modification time, ...), asked afresh, so that every process finds the same.

    Never raises: a file that cannot be read has an identity saying so, and its task makes it a reject.
    """
    try:
        if is_url(path):
            import fsspec

            fs, remote = fsspec.core.url_to_fs(path)
            fs.invalidate_cache(remote)  # asked of the store itself, not of a listing cached since
            info = fs.info(remote)
            version = {key: str(info[key]) for key in _VERSION_KEYS if info.get(key) is not None}
            return "remote:" + json.dumps(version, sort_keys=True)
        with open_input(path) as handle:  # refuses special files without blocking on them
            status = os.fstat(handle.fileno())
            head = hashlib.sha1(handle.read(_IDENTITY_HEAD_BYTES)).hexdigest()
        return f"local:{status.st_size}:{status.st_mtime_ns}:{head}"
    except Exception as exc:  # noqa: BLE001 - the task reports why the file cannot be read
        return f"unreadable:{type(exc).__name__}: {exc}"
