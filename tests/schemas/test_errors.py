"""schemas.errors: the user's error and its wire form, the exception line of a Spark task's traceback."""

import traceback

import pytest

from thresher.classifiers.base import ModelNotFoundError
from thresher.classifiers.topic import TaxonomyError
from thresher.pipeline.config import ConfigError
from thresher.schemas.errors import InputError, UserError
from thresher.schemas.stats import StatsError


def worker_traceback(error: BaseException) -> str:
    """The text a Python worker sends the driver for `error` raised in a task: its formatted traceback."""
    try:
        raise error
    except BaseException as raised:
        return "".join(traceback.format_exception(raised))


@pytest.mark.parametrize("error", [ConfigError, InputError, ModelNotFoundError, TaxonomyError, StatsError])
def test_every_users_error_is_a_user_error_read_back_from_a_task(error):
    assert issubclass(error, UserError) and issubclass(error, ValueError)
    assert UserError.in_task_failure(worker_traceback(error("fix this, then rerun"))) == "fix this, then rerun"
    assert UserError.in_task_failure(RuntimeError(worker_traceback(error("as an exception's text")))) == "as an exception's text"


def test_a_subclass_is_recognised_in_whatever_module_it_lives():
    moved = type("MovedError", (InputError,), {"__module__": "somewhere.else.entirely"})
    text = worker_traceback(moved("still one line"))
    assert "somewhere.else.entirely.MovedError: still one line" in text
    assert UserError.in_task_failure(text) == "still one line"
    assert InputError.in_task_failure(text) == "still one line"
    assert ConfigError.in_task_failure(text) is None  # a class reads back its own subclasses only


def test_another_error_is_not_a_users_error_even_when_its_message_names_one():
    assert UserError.in_task_failure(worker_traceback(ValueError("a bug"))) is None
    assert UserError.in_task_failure(worker_traceback(KeyError("thresher.schemas.errors.InputError: no"))) is None
    assert UserError.in_task_failure("thresher.schemas.errors.InputErrorLike: no") is None


def raised_from(error: BaseException, cause: BaseException) -> str:
    """The worker's traceback of `raise error from cause`."""
    try:
        raise error from cause
    except BaseException as raised:
        return "".join(traceback.format_exception(raised))


def raised_while_handling(error: BaseException, first: BaseException) -> str:
    """The worker's traceback of `error` raised in the `except` block of `first`."""
    try:
        try:
            raise first
        except BaseException:
            raise error  # noqa: B904 (the implicit chain is what is tested)
    except BaseException as raised:
        return "".join(traceback.format_exception(raised))


def test_the_error_a_task_raised_decides_not_the_ones_that_led_to_it():
    assert UserError.in_task_failure(raised_from(InputError("line 3 is not JSON"), ValueError("Expecting value"))) == (
        "line 3 is not JSON")
    assert UserError.in_task_failure(raised_from(ConfigError("the rewrapped one"), ConfigError("the first"))) == (
        "the rewrapped one")
    assert UserError.in_task_failure(raised_from(RuntimeError("a bug"), InputError("not the task's error"))) is None
    assert UserError.in_task_failure(raised_while_handling(RuntimeError("a bug"), InputError("handled"))) is None
    # A wrapping Java error repeats the worker's text, chain lines and all.
    twice = raised_from(InputError("line 3 is not JSON"), ValueError("Expecting value"))
    assert UserError.in_task_failure(twice + "\tat org.apache.spark.Task.run\nCaused by: " + twice) == "line 3 is not JSON"
