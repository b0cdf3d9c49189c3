"""The cart view model in Redis: one hash per cart holding its view JSON and version.

Keys of one cart share the hash tag ``{teamcart:<id>}`` (so they live on one Redis Cluster
slot and one script may touch them all):

- ``{teamcart:<id>}:view`` — hash ``version``, ``view`` (the cart view of API.md, JSON, with
  every ``online`` flag false), ``ttl`` (ms). The TTL slides on every write and read; a
  converted, cancelled or expired cart keeps a short one.
- ``{teamcart:<id>}:presence`` — see :mod:`realtime.presence`.

Every write is a Lua script shipped beside this module and registered once:
``view_apply.lua`` (the compare-and-set of the projection: version ``v`` applies only onto
``v-1``), ``view_write_if_newer.lua`` (rebuilds) and ``view_read.lua``. Each also returns the
connections online now, so a caller gets the view and its presence overlay in one round trip.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from importlib import resources
from typing import Final

from redis.asyncio import Redis

from realtime.presence import online_users, presence_key

TERMINAL_STATUSES: Final = frozenset({"converted", "cancelled", "expired"})
DEFAULT_TTL_MS: Final = 24 * 3600 * 1000
DEFAULT_TERMINAL_TTL_MS: Final = 10 * 60 * 1000


def view_key(cart_id: str) -> str:
    return f"{{teamcart:{cart_id}}}:view"


def load_script(name: str) -> str:
    """The text of one of the package's ``.lua`` files."""
    return resources.files("realtime").joinpath(name).read_text(encoding="utf-8")


class Outcome(enum.Enum):
    """What applying one version to a cart's view did (the Lua compare-and-set's answer, and
    the projection's, which the dispatcher's metrics count)."""

    APPLIED = "applied"  # the view moved from v-1 to v
    DUPLICATE = "duplicate"  # the view is at v or newer already
    GAP = "gap"  # the view is older than v-1 or missing


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: Outcome
    stored_version: int
    """The stored view's version after the call (0: none)."""
    online: frozenset[str]


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: bool
    stored_version: int
    online: frozenset[str]


@dataclass(frozen=True, slots=True)
class StoredView:
    version: int
    view_json: bytes
    online: frozenset[str]


class ViewStore:
    """Compare-and-set writes and reads of cart views in Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        terminal_ttl_ms: int = DEFAULT_TERMINAL_TTL_MS,
    ) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.terminal_ttl_ms = terminal_ttl_ms
        self._apply = redis.register_script(load_script("view_apply.lua"))
        self._write_if_newer = redis.register_script(load_script("view_write_if_newer.lua"))
        self._read = redis.register_script(load_script("view_read.lua"))

    def ttl_for(self, status: str) -> int:
        return self.terminal_ttl_ms if status in TERMINAL_STATUSES else self.ttl_ms

    async def apply(self, cart_id: str, version: int, view_json: bytes, status: str) -> ApplyResult:
        """Write the view of event ``version`` only onto the view of ``version - 1``."""
        outcome, stored, members = await self._apply(
            keys=[view_key(cart_id), presence_key(cart_id)],
            args=[version, view_json, self.ttl_for(status)],
        )
        return ApplyResult(Outcome(outcome.decode()), int(stored), online_users(members))

    async def write_if_newer(
        self, cart_id: str, version: int, view_json: bytes, status: str
    ) -> WriteResult:
        """Write a rebuilt view unless the stored one is at ``version`` or newer."""
        outcome, stored, members = await self._write_if_newer(
            keys=[view_key(cart_id), presence_key(cart_id)],
            args=[version, view_json, self.ttl_for(status)],
        )
        return WriteResult(outcome == b"written", int(stored), online_users(members))

    async def read(self, cart_id: str) -> StoredView | None:
        """The stored view and who is online, sliding its TTL; ``None`` when not stored."""
        version, view_json, members = await self._read(
            keys=[view_key(cart_id), presence_key(cart_id)]
        )
        if version is None or view_json is None:
            return None
        return StoredView(int(version), bytes(view_json), online_users(members))
