"""No module-level mutable state in app/, domain/ or realtime/: every piece of state a
command touches is passed in (the unit of work, the wiring), never found in a global.

Constants are fine when they can't change: tuples, frozensets, ``MappingProxyType``. A
module-level dict, list or set (or a weak or default dict, a deque, a counter) is a hidden
registry or cache waiting to happen, so it fails here.
"""

from __future__ import annotations

import collections
import importlib
import pkgutil
import weakref
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
MUTABLE = (
    dict,
    list,
    set,
    bytearray,
    collections.deque,
    weakref.WeakKeyDictionary,
    weakref.WeakValueDictionary,
    weakref.WeakSet,
)


def modules() -> list[str]:
    names = []
    for package in ("app", "domain", "realtime"):
        names.append(package)
        names += [
            info.name
            for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}.")
            if info.name != "app.asgi"  # builds the app from the environment on import
        ]
    return names


def mutable_globals(module: ModuleType) -> list[str]:
    return [
        f"{module.__name__}.{name}: {type(value).__name__}"
        for name, value in vars(module).items()
        if not (name.startswith("__") and name.endswith("__")) and isinstance(value, MUTABLE)
    ]


@pytest.mark.parametrize("name", modules())
def test_no_module_holds_mutable_state(name: str) -> None:
    assert mutable_globals(importlib.import_module(name)) == []


def test_the_check_finds_a_hidden_registry() -> None:
    module = ModuleType("example")
    vars(module)["_relays"] = weakref.WeakKeyDictionary()
    vars(module)["_ok"] = frozenset()
    assert mutable_globals(module) == ["example._relays: WeakKeyDictionary"]
