"""Presence: which members are connected to a cart now, kept in Redis with a TTL.

``{teamcart:<id>}:presence`` is a sorted set of ``"<user_id>|<connection id>"`` scored by
expiry (ms, Redis clock). A socket adds its entry when it connects and removes it when it
closes; every process refreshes the entries of its live sockets every few seconds
(:meth:`realtime.hub.Hub.running`). A process that dies without closing its sockets stops
refreshing, so its entries expire within the TTL and the next refresh by any other process
watching the cart drops them and pushes the change. One user with two tabs is two entries and
stays online until both are gone.

Every change goes through one script, ``presence_touch.lua``, which returns the entries before
and after, so the caller knows whether the set of online users changed and must be pushed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from redis.asyncio import Redis

DEFAULT_TTL_MS: Final = 9_000
"""A connection not refreshed for this long counts as gone (three missed heartbeats)."""


def presence_key(cart_id: str) -> str:
    return f"{{teamcart:{cart_id}}}:presence"


def presence_member(user_id: str, connection_id: str) -> str:
    return f"{user_id}|{connection_id}"


def online_users(members: Iterable[bytes | str]) -> frozenset[str]:
    """User ids of presence entries (one user may hold several connections)."""
    users = set()
    for member in members:
        text = member.decode() if isinstance(member, bytes) else member
        users.add(text.partition("|")[0])
    return frozenset(users)


@dataclass(frozen=True, slots=True)
class PresenceChange:
    before: frozenset[str]
    after: frozenset[str]

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _change(reply: Sequence[Sequence[bytes]]) -> PresenceChange:
    before, after = reply
    return PresenceChange(online_users(before), online_users(after))


class PresenceStore:
    """Add, remove and refresh connections in the presence sets."""

    def __init__(self, redis: Redis, *, ttl_ms: int = DEFAULT_TTL_MS) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        text = resources.files("realtime").joinpath("presence_touch.lua").read_text("utf-8")
        self._touch = redis.register_script(text)

    def _args(self, add: Sequence[str], remove: Sequence[str]) -> list[Any]:
        return [self.ttl_ms, len(add), *add, *remove]

    async def touch(
        self, cart_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> PresenceChange:
        reply = await self._touch(keys=[presence_key(cart_id)], args=self._args(add, remove))
        return _change(reply)

    async def refresh(self, connections: Mapping[str, Sequence[str]]) -> dict[str, PresenceChange]:
        """Refresh many carts' connections in one round trip (a pipeline): ``cart → members``."""
        if not connections:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for cart_id, members in connections.items():
                await self._touch(
                    keys=[presence_key(cart_id)], args=self._args(members, ()), client=pipe
                )
            replies = await pipe.execute()
        return {
            cart_id: _change(reply) for cart_id, reply in zip(connections, replies, strict=True)
        }
