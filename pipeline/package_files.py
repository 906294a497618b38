"""thresher's own files (configs/, the shipped models, jobs/gpu_discovery.sh) as paths on disk.

Installed from the wheel or run from a checkout, they lie beside the modules. Imported from a zip
(`spark-submit --py-files thresher.zip`), they lie inside it, where fastText, Spark's JVM and a plain
open() cannot read them: so the first call in each process extracts the zip's other files, once per
machine and user, into the temporary directory under a name taken from the zip's content, and every
later process (or a concurrent one) finds them there.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import zipfile
import zipimport
from pathlib import Path

import thresher

_CODE_SUFFIXES = (".py", ".pyc")


def package_path(relative: str) -> Path:
    """The file or directory `relative` (e.g. "configs/default.yaml") of the thresher package, on disk."""
    return package_root() / relative


@functools.cache
def package_root() -> Path:
    """The directory that holds thresher's files: the package's own, or the zip's, extracted."""
    root = Path(os.path.abspath(thresher.__file__)).parent
    loader = thresher.__spec__.loader
    if not isinstance(loader, zipimport.zipimporter):
        return root
    archive = Path(os.path.abspath(loader.archive))
    return _extracted(archive, root.relative_to(archive).as_posix())


def _extracted(archive: Path, inner: str) -> Path:
    """`inner` (the package's folder in `archive`), its non-Python files extracted; returns their root."""
    content = archive.read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"thresher-files-{os.getuid()}-{digest}"
    if not target.is_dir():
        # Extracted beside the target and renamed into place: a reader never sees a half-extracted tree.
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                if member.filename.startswith(f"{inner}/") and not member.filename.endswith(_CODE_SUFFIXES):
                    path = Path(bundle.extract(member, staging))
                    mode = member.external_attr >> 16
                    if mode and not member.is_dir():
                        path.chmod(mode & 0o755)  # jobs/gpu_discovery.sh stays executable
        try:
            staging.rename(target)
        except OSError:  # another process renamed its copy first: the same bytes
            shutil.rmtree(staging)
    return target / inner
