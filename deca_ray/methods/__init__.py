"""Training methods, chosen by ``algorithm.type``.

Each module in this package defines one or more ``Method`` subclasses and registers them by
name with ``@register``; a method with options of its own names their pydantic model in
``Method.options`` (a subclass of ``AlgorithmConfig``), which the experiment config then
validates ``algorithm`` against. The package imports every module in it, so adding a method,
options included, is one new file here: config, client, driver, runtime and CLI need no edits.

    methods/
      base.py        Method: what a client trains, its local step, what it sends, how it mixes
      deca.py        deca, local_block_adam
      full_model.py  dsgd, dadam, centralized_adam
      lora.py        dec_lora, decaf            (peft)
      adapter.py     dec_adapter                (bottleneck adapters)
"""

from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil

from deca_ray.config import AlgorithmConfig
from deca_ray.errors import ConfigError
from deca_ray.methods.base import Method

_REGISTRY: dict[str, type[Method]] = {}


def register(method: type[Method]) -> type[Method]:
    """Class decorator: make ``method`` selectable as ``algorithm.type: <method.name>``."""
    if method.name in _REGISTRY and _REGISTRY[method.name] is not method:
        raise ValueError(f"method name {method.name!r} is registered twice")
    _REGISTRY[method.name] = method
    return method


def method_names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``, or a ConfigError naming the closest one."""
    _discover()
    if name not in _REGISTRY:
        raise ConfigError(f"algorithm.type: {_unknown(name)}")
    return _REGISTRY[name]


def options_model(name: str) -> type[AlgorithmConfig]:
    """The options model of method ``name`` (what config validation asks for); ValueError if unknown."""
    _discover()
    if name not in _REGISTRY:
        raise ValueError(_unknown(name))
    return _REGISTRY[name].options


def build_method(algorithm: AlgorithmConfig) -> Method:
    """The method ``algorithm.type`` names, holding its validated options."""
    return get_method(algorithm.type)(algorithm)


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown method {name!r}; {hint}registered: {', '.join(sorted(_REGISTRY))}"


@functools.cache
def _discover() -> None:
    """Import every module of the package once (each registers its methods)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


__all__ = ["Method", "build_method", "get_method", "method_names", "options_model", "register"]
