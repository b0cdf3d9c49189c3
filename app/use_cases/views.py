"""Reads of a cart for its members: the view with presence, and who may watch it.

Served from the Redis view model (``realtime.projection``), with PostgreSQL, the source of
truth, asked the one question the view can't answer alone (is it behind a just-committed
change?). Reads run in a unit of work like commands, and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import RedisError

from app.failures import cart_not_found
from app.unit_of_work import UnitOfWork, UnitOfWorkRunner
from domain.errors import NotAMember
from realtime.cart_view import CartView, cart_view
from realtime.projection import Projection, with_presence


async def _version(cart_id: str, uow: UnitOfWork) -> int | None:
    return await uow.carts.version_of(cart_id)


async def _stored_view(cart_id: str, uow: UnitOfWork) -> CartView | None:
    cart = await uow.carts.get(cart_id)
    return None if cart is None else cart_view(cart)


async def stored_view(runner: UnitOfWorkRunner, cart_id: str) -> CartView | None:
    """The cart's view as PostgreSQL has it, for a rebuild of the view model."""
    return await runner.run(_stored_view, cart_id)


async def read_cart_view(
    runner: UnitOfWorkRunner, projection: Projection, user_id: str, cart_id: str
) -> CartView:
    """A member's view of the cart, with presence, served from the Redis view model.

    The view is rebuilt on a miss. In the few milliseconds after a commit before the
    projection has applied it, the view is behind the cart's version (one primary-key read):
    the cart is then read from PostgreSQL, so a client always reads its own writes. While
    Redis is out of reach the cart is read from PostgreSQL, the source of truth, without
    presence (nobody shows online).
    """
    version = await runner.run(_version, cart_id)
    if version is None:
        raise cart_not_found(cart_id)
    try:
        live = await projection.current(cart_id)
    except RedisError:
        live = None
    if live is None or live.cart.version < version:
        stored = await runner.run(_stored_view, cart_id)
        if stored is None:
            raise cart_not_found(cart_id)
        view = stored if live is None else with_presence(stored, live.online)
    else:
        view = live.cart
    if all(member.user_id != user_id for member in view.members):
        raise NotAMember()
    return view


@dataclass(frozen=True, slots=True)
class Membership:
    cart_id: str
    user_id: str


async def _is_member(query: Membership, uow: UnitOfWork) -> bool:
    return await uow.carts.is_member(query.cart_id, query.user_id)


async def is_member(runner: UnitOfWorkRunner, cart_id: str, user_id: str) -> bool:
    """Whether the user is a member of the cart right now, by PostgreSQL."""
    return await runner.run(_is_member, Membership(cart_id, user_id))


async def _member_version(query: Membership, uow: UnitOfWork) -> int:
    version = await uow.carts.version_of(query.cart_id)
    if version is None:
        raise cart_not_found(query.cart_id)
    if not await uow.carts.is_member(query.cart_id, query.user_id):
        raise NotAMember()
    return version


async def member_version(runner: UnitOfWorkRunner, cart_id: str, user_id: str) -> int:
    """The cart's version by PostgreSQL, for a member (404 no such cart, 403 not a member):
    all a conditional read (``If-None-Match``) needs to answer 304, two primary-key reads
    and no view."""
    return await runner.run(_member_version, Membership(cart_id, user_id))
