"""Stripe's form bodies: ``a[b][0][c]=v`` keys read into nested dicts and lists, and back.

The SDK sends every request body form-encoded with brackets for nesting
(``line_items[0][price_data][currency]=usd``, ``metadata[order_id]=o_1``, ``expand[0]=x``).
The add-on must read exactly what the SDK writes, and write what localstripe reads, so both
directions live here, free of I/O, where unit tests pin them down.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

FormValue = str | dict[str, "FormValue"]
"""A decoded form field: a string or a nested object. A list is an object with the keys
``"0"``, ``"1"``, …: only the parameter knows whether it is a list (``metadata[0]`` is a key
named ``0``), so ``form_list`` reads one where a list is expected."""

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """The body can't be read as Stripe's bracket notation (a malformed key, or one name used
    both as a value and as an object). ``param`` is the offending key."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse_form(body: bytes | str) -> dict[str, FormValue]:
    """Decode an ``application/x-www-form-urlencoded`` body in Stripe's bracket notation.

    ``a[]`` appends (the next number as key). Blank values are kept: Stripe reads
    ``metadata[k]=`` as "unset k", which is the caller's to decide.
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    tree: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=False):
        _insert(tree, key, value)
    return tree


def _insert(tree: dict[str, Any], key: str, value: str) -> None:
    match = _KEY.match(key)
    if match is None:
        raise FormError(f"Invalid form key: {key}", key)
    *parents, last = [match.group(1), *_SEGMENT.findall(match.group(2))]
    node = tree
    for segment in parents:
        # ``a[][b]=v`` appends an object: a fresh numbered slot.
        child = node.setdefault(segment or str(len(node)), {})
        if not isinstance(child, dict):
            raise FormError(f"Invalid form key: {key} (both a value and an object)", key)
        node = child
    last = last or str(len(node))
    if isinstance(node.get(last), dict):
        raise FormError(f"Invalid form key: {key} (both a value and an object)", key)
    node[last] = value  # a repeated key: the last one counts


def form_list(value: FormValue | None) -> list[FormValue] | None:
    """A list parameter (``a[0]=x&a[1]=y``, or ``a[]=x&a[]=y``) in index order; ``None`` when
    the value is not a list (a string, or an object with other keys)."""
    if not isinstance(value, dict):
        return None
    if not all(key.isdigit() for key in value):
        return None
    return [value[key] for key in sorted(value, key=int)]


def encode_form(params: Mapping[str, Any]) -> str:
    """The bracket-notation body for ``params`` (what the SDK would send, and localstripe
    reads): nested mappings as ``a[b]``, lists as ``a[0]``, booleans as ``true``/``false``,
    ``None`` left out."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        _flatten(name, value, pairs)
    return urllib.parse.urlencode(pairs)


def _flatten(prefix: str, value: Any, pairs: list[tuple[str, str]]) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, child in value.items():
            _flatten(f"{prefix}[{key}]", child, pairs)
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            _flatten(f"{prefix}[{index}]", child, pairs)
    elif isinstance(value, bool):
        pairs.append((prefix, "true" if value else "false"))
    else:
        pairs.append((prefix, str(value)))
