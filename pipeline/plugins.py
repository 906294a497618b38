"""A user's own filters and taggers: a config entry names a class (`package.module:Class`) and its keyword
arguments (config.PluginConfig); `load_plugin` imports and makes it, checking what it can before Spark
starts. The module must import where the tasks run: on PYTHONPATH or installed (local mode's workers
inherit the driver's environment); on a cluster, shipped with `spark-submit --py-files` as thresher.zip
is (README "Your own filters and taggers")."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from thresher.pipeline.config import ConfigError, PluginConfig


def plugin_class(spec: PluginConfig, base: type, method: str, parameters: tuple[str, ...], key: str) -> type:
    """The class `spec` names, checked: a subclass of `base` that defines `method(self, *parameters)`;
    ConfigError naming `key` otherwise."""
    module_name, colon, class_name = spec.class_path.partition(":")
    if not colon or not module_name or not class_name:
        raise ConfigError(f"{key}.class_path: {spec.class_path!r} is not package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the module raises on import is the user's to see, in one line
        raise ConfigError(f"{key}.class_path: cannot import {module_name} ({type(exc).__name__}: {exc}); is it on "
                          "PYTHONPATH (a cluster ships it with --py-files)?") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"{key}.class_path: module {module_name} has no {class_name}")
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise ConfigError(f"{key}.class_path: {spec.class_path} is not a subclass of {base.__module__}.{base.__qualname__}")
    if getattr(cls, method) is getattr(base, method):
        raise ConfigError(f"{key}.class_path: {spec.class_path} does not define {method}({', '.join(parameters)})")
    given = [p for p in inspect.signature(getattr(cls, method)).parameters.values() if p.name != "self"]
    positional = [p for p in given if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in given if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if len(positional) < len(parameters) or len(required) > len(parameters):
        raise ConfigError(f"{key}.class_path: {spec.class_path}.{method} takes ({', '.join(p.name for p in given)}); "
                          f"it must take ({', '.join(parameters)})")
    return cls


def load_plugin(spec: PluginConfig, base: type, method: str, parameters: tuple[str, ...], key: str) -> Any:
    """An instance of the class `spec` names (`plugin_class`), made with `spec.args`; arguments it does not
    take, or that its constructor refuses, are a ConfigError naming `key`."""
    cls = plugin_class(spec, base, method, parameters, key)
    try:
        inspect.signature(cls).bind(**spec.args)
    except TypeError as exc:
        raise ConfigError(f"{key}.args: {spec.class_path}{inspect.signature(cls)}: {exc}") from None
    try:
        return cls(**spec.args)
    except Exception as exc:  # noqa: BLE001 - a constructor refusing its arguments is the user's error, in one line
        raise ConfigError(f"{key}.args: {spec.class_path} refused them ({type(exc).__name__}: {exc})") from None
