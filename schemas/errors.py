"""A user's error: a config, input, model directory, taxonomy or stats file the user must fix.

Its contract with the console (jobs.errors): the message says what to fix, in one line, and is printed
as `thresher X: error: <message>` instead of a traceback, wherever the error was raised. Raised on the
driver it arrives as itself. Raised in a Spark task it arrives only as text (pyspark's PythonException,
or the Py4JJavaError around it), which holds the worker's traceback; that traceback's exception line,
`<module>.<qualname>: <message>`, is the error's wire form, read back by `UserError.in_task_failure`.
"""

from __future__ import annotations


class UserError(ValueError):
    """The base of every user's error; a subclass may live in any module and needs no registration."""

    @classmethod
    def in_task_failure(cls, failure: BaseException | str) -> str | None:
        """The message of the error of this class (or a subclass) that a Spark task raised, read from
        the failure's text; None when the task failed with another error.

        The class names are read from the class hierarchy at each call, so a subclass moved to another
        module is still recognised. A class counts once this process has loaded it: define a user's
        error in a module the driver imports, not in one that only a task imports.
        """
        names = {_traceback_name(subclass) for subclass in _self_and_subclasses(cls)}
        lines = str(failure).splitlines()
        for index, line in enumerate(lines):
            name, separator, message = line.partition(": ")
            if separator and name in names and not any(later in _CHAIN_LINES for later in lines[index + 1:]):
                return message.strip()
        return None


def _self_and_subclasses(cls: type) -> list[type]:
    found, pending = [], [cls]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(current.__subclasses__())
    return found


# The lines by which a traceback goes on from an exception to the one raised because of it: an
# exception line followed by one of them is not the error the task raised.
_CHAIN_LINES = ("The above exception was the direct cause of the following exception:",
                "During handling of the above exception, another exception occurred:")


def _traceback_name(cls: type) -> str:
    """`cls` as a traceback's exception line names it (traceback.format_exception_only)."""
    module = cls.__module__
    return cls.__qualname__ if module in ("__main__", "builtins") else f"{module}.{cls.__qualname__}"


class InputError(UserError):
    """An input that cannot be read as given (a path naming nothing readable, a JSONL line that is no
    JSON object); the message names it."""
