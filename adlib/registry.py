"""Detectors by name: ``get_detector("adacl", seed=1)`` and ``available_detectors()``.

A method registers itself with the :func:`register` decorator in its module under
``adlib/methods``; importing :mod:`adlib.methods` imports them all. The bench command and the
notebooks resolve methods only through here.
"""
from __future__ import annotations

import importlib

__all__ = ["register", "get_detector", "detector_class", "available_detectors",
           "UnknownDetectorError"]

_REGISTRY: dict[str, type] = {}


class UnknownDetectorError(KeyError):
    """No detector is registered under that name."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


def register(name: str):
    """Class decorator: register a detector class under ``name`` (lower snake case)."""
    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"detector name {name!r} is already taken by {_REGISTRY[name]}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return wrap


def _load_methods() -> None:
    importlib.import_module("adlib.methods")


def available_detectors() -> list[str]:
    """Sorted names of every registered detector."""
    _load_methods()
    return sorted(_REGISTRY)


def detector_class(name: str) -> type:
    """The class registered under ``name``; unknown names list the valid ones."""
    _load_methods()
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        raise UnknownDetectorError(f"unknown detector {name!r}; available: "
                                   f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def get_detector(name: str, **params):
    """A new detector ``name`` built with keyword ``params`` (checked against its signature)."""
    cls = detector_class(name)
    valid = cls._param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"{name} has no parameter {', '.join(unknown)}; valid: {', '.join(valid)}")
    return cls(**params)
