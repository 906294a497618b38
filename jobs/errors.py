"""A user's error as one line on the console, instead of a traceback or a Java stack."""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys

from thresher.schemas.errors import UserError


def run_with_one_line_errors(prog: str, run, args: argparse.Namespace) -> int:
    """`run(args)`, with a user's error or a full disk printed as one line (exit 2 and 1) instead of a traceback."""
    try:
        return run(args)
    except UserError as exc:
        # Bad config, inputs or model paths: the message says what to fix; a traceback would bury it.
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before Spark started (then jobs.session handles Ctrl-C)
        from thresher.jobs.session import INTERRUPTED_EXIT, INTERRUPTED_MESSAGE

        print(INTERRUPTED_MESSAGE, file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT
    except Exception as exc:
        # A user's error raised in a Spark task reaches here as the text of the task's failure.
        if (message := UserError.in_task_failure(exc)) is not None:
            print(f"{prog}: error: {message}", file=sys.stderr)
            return 2
        full = _full_directory(exc, getattr(args, "output", None))
        if full is None:
            raise
        # Committed stages stay committed and stage 1 keeps its finished files, so a rerun goes on.
        print(f"{prog}: error: no space left on the device holding {full}: free space there "
              "and rerun the same command; it goes on from where this one stopped", file=sys.stderr)
        return 1


_NO_SPACE = re.compile(r"No space left on device(?:: '([^']+)')?|Disk quota exceeded(?:: '([^']+)')?")


def _full_directory(exc: Exception, output: str | None) -> str | None:
    """The directory a disk-full failure was writing (else `output`, else "the output directory"); None if
    `exc` is no disk-full failure. Spark reports one from an executor or the JVM as text, not as an OSError."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        path = exc.filename
    elif match := _NO_SPACE.search(str(exc)):
        path = match.group(1) or match.group(2)
    else:
        return None
    if path:
        return os.path.dirname(os.path.abspath(path)) if not os.path.isdir(path) else os.path.abspath(path)
    return os.path.abspath(output) if output else "the output directory"

