"""``GET /ws/teamcarts/{id}``: a member's live view of one cart (API.md, "Real time"); and
``GET /ws/orders/{id}``, an order's (API.md § Orders), at the end.

The socket is accepted, then authenticated with the ``token`` query parameter or, failing
that, a first message ``{"type": "auth", "token": …}`` within a few seconds (4401 otherwise).
An unknown cart closes with 4404 and a non-member with 4403. A member's socket joins the
process's hub (:mod:`realtime.hub`), which subscribes, marks them online and sends the
snapshot, then every update. This handler only reads the client's messages: ``ping`` →
``pong``, ``resync`` → a fresh snapshot, anything else → an ``error`` message.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from types import MappingProxyType
from typing import Any, Final

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import NotAuthorizedException, WebSocketDisconnect
from litestar.params import FromPath
from litestar.security.jwt import Token
from redis.exceptions import RedisError

from app.auth import Principal, principal_from_token
from app.failures import ForbiddenError, NotFoundError
from app.resources import AppResources, Resources
from app.unit_of_work import UnitOfWorkRunner
from app.use_cases import orders
from app.use_cases.order_views import order_view
from app.use_cases.views import is_member
from realtime.hub import HubUnavailable, LiveConnection
from realtime.order_feed import OrderWatch
from realtime.projection import Projection
from realtime.protocol import (
    CLOSE_CART_NOT_FOUND,
    CLOSE_NOT_A_MEMBER,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHENTICATED,
    PONG_TEXT,
    Auth,
    Error,
    Ping,
    Resync,
    decode_client_message,
    encode_text,
)

AUTH_TIMEOUT_SECONDS: Final = 5.0
JWT_ALGORITHM: Final = "HS256"


def _principal(token: str, secret: str) -> Principal | None:
    try:
        return principal_from_token(Token.decode(token, secret, JWT_ALGORITHM))
    except NotAuthorizedException:
        return None


class TooManyWaiting(Exception):
    """This process has as many sockets waiting for their auth message as it takes."""


async def _authenticate(socket: WebSocket[Any, Any, Any], resources: Resources) -> str | None:
    """The user id of a valid token (only the id: it is all a cart socket keeps)."""
    principal = await _authenticated(socket, resources)
    return None if principal is None else principal.user_id


async def _authenticated(
    socket: WebSocket[Any, Any, Any], resources: Resources
) -> Principal | None:
    """Who a valid token names: from the URL's ``token``, or the first ``auth`` message."""
    secret = resources.jwt_secret
    token = socket.query_params.get("token")
    if token:
        return _principal(token, secret)
    if not resources.pending_auth.admit():
        raise TooManyWaiting()
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_SECONDS):
            first = await socket.receive_data("text")
        message = decode_client_message(first)
    except (TimeoutError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    finally:
        resources.pending_auth.leave()
    return _principal(message.token, secret) if isinstance(message, Auth) else None


async def _refusal(
    projection: Projection, runner: UnitOfWorkRunner, cart_id: str, user_id: str
) -> int:
    """The close code for a socket that may not watch the cart, or 0. (A function of its
    own, so the view it reads is not kept alive for the connection's lifetime.)

    The view can trail a just-committed join by a few milliseconds, so a user it doesn't
    list is checked against PostgreSQL, the source of truth, before being refused. While
    the view model is out of reach, the client is told to try again later (1013).
    """
    try:
        live = await projection.current(cart_id)
    except RedisError:
        return CLOSE_TRY_AGAIN_LATER
    if live is None:
        return CLOSE_CART_NOT_FOUND
    if any(member.user_id == user_id for member in live.cart.members):
        return 0
    return 0 if await is_member(runner, cart_id, user_id) else CLOSE_NOT_A_MEMBER


_REFUSALS = MappingProxyType(
    {
        CLOSE_CART_NOT_FOUND: "cart_not_found",
        CLOSE_NOT_A_MEMBER: "not_a_member",
        CLOSE_TRY_AGAIN_LATER: "try_again_later",
    }
)


def _text_of(event: Any) -> str | bytes:
    return event.get("text") or event.get("bytes") or b""


async def _handshake(
    socket: WebSocket[Any, Any, Any], cart_id: str, resources: Resources
) -> LiveConnection | None:
    """Authenticate and admit the socket to its cart's room; ``None`` once it is closed
    (with the protocol's code) or the client left during the handshake."""
    live = resources.live
    try:
        try:
            user_id = await _authenticate(socket, resources)
        except TooManyWaiting:
            await socket.close(CLOSE_TRY_AGAIN_LATER, "try_again_later")
            return None
        if user_id is None:
            await socket.close(CLOSE_UNAUTHENTICATED, "unauthenticated")
            return None
        refusal = await _refusal(live.projection, resources.runner, cart_id, user_id)
        if refusal:
            await socket.close(refusal, _REFUSALS[refusal])
            return None
        try:
            return await live.hub.connect(cart_id, user_id, socket.send_text, socket.close)
        except HubUnavailable:
            await socket.close(CLOSE_TRY_AGAIN_LATER, "try_again_later")
            return None
    except WebSocketDisconnect:  # the client left during the handshake
        return None


@websocket("/ws/teamcarts/{cart_id:uuid}")
async def cart_socket(
    socket: WebSocket[Any, Any, Any], cart_id: FromPath[uuid.UUID], resources: AppResources
) -> None:
    """Live updates of one cart for one of its members.

    Everything this frame holds lives as long as the socket, so it holds little: the user
    id, the hub's connection, no view, no token. (One frame, not two: each costs memory.)
    """
    await socket.accept()
    live = resources.live
    connection = await _handshake(socket, str(cart_id), resources)
    if connection is None:
        return
    try:
        while True:
            event = await socket.receive()
            if event["type"] == "websocket.disconnect":
                break
            try:
                message = decode_client_message(_text_of(event))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                connection.reply(encode_text(Error("unknown_message", str(exc))))
                continue
            if isinstance(message, Ping):
                connection.reply(PONG_TEXT)
            elif isinstance(message, Resync):
                connection.resync()
            # a late ``auth`` message changes nothing: the socket is already authenticated
    finally:
        await live.hub.disconnect(connection)


async def _order_snapshot(
    runner: UnitOfWorkRunner, principal: Principal, order_id: str
) -> tuple[int, bytes] | None:
    """The order's version and view as PostgreSQL has it; ``None`` when it is gone."""
    try:
        order = await runner.run(orders.get_order, orders.ReadOrder(principal, order_id))
    except NotFoundError:
        return None
    return order.version, _order_encoder.encode(order_view(order))


_order_encoder = msgspec.json.Encoder()


@websocket("/ws/orders/{order_id:uuid}")
async def order_socket(
    socket: WebSocket[Any, Any, Any], order_id: FromPath[uuid.UUID], resources: AppResources
) -> None:
    """Live updates of one order for everyone who may read it (the cart sockets' protocol
    with ``order`` in place of ``cart``): 4401 without a valid token, 4404 for no such
    order, 4403 for anyone who may not read it, 1013 while Redis is away."""
    await socket.accept()
    try:
        principal = await _authenticated(socket, resources)
    except (TooManyWaiting, WebSocketDisconnect):
        await _close_quietly(socket, CLOSE_TRY_AGAIN_LATER, "try_again_later")
        return
    if principal is None:
        await _close_quietly(socket, CLOSE_UNAUTHENTICATED, "unauthenticated")
        return
    order = str(order_id)
    try:
        await resources.runner.run(orders.get_order, orders.ReadOrder(principal, order))
    except NotFoundError:
        await _close_quietly(socket, CLOSE_CART_NOT_FOUND, "order_not_found")
        return
    except ForbiddenError:
        await _close_quietly(socket, CLOSE_NOT_A_MEMBER, "not_a_participant")
        return

    async def load() -> tuple[int, bytes] | None:
        return await _order_snapshot(resources.runner, principal, order)

    watch = OrderWatch(resources.live.link, order, load)
    try:
        snapshot = await watch.open()
    except (RedisError, OSError, TimeoutError):
        await watch.close()
        await _close_quietly(socket, CLOSE_TRY_AGAIN_LATER, "try_again_later")
        return
    reader = asyncio.create_task(_read_order_client(socket, watch), name=f"ws-order-{order}")
    try:
        while snapshot is not None:
            await socket.send_text(snapshot)
            snapshot = await watch.next_text()
        if not watch.gone:
            await _close_quietly(socket, CLOSE_CART_NOT_FOUND, "order_not_found")
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client went away
    finally:
        reader.cancel()
        await watch.close()


async def _read_order_client(socket: WebSocket[Any, Any, Any], watch: OrderWatch) -> None:
    """The client's messages: ``ping`` → ``pong``, ``resync`` → a fresh snapshot; a
    disconnect ends the socket's task (it is the one sending)."""
    while True:
        event = await socket.receive()
        if event["type"] == "websocket.disconnect":
            watch.disconnected()
            return
        try:
            message = decode_client_message(_text_of(event))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await socket.send_text(encode_text(Error("unknown_message", str(exc))))
            continue
        if isinstance(message, Ping):
            await socket.send_text(PONG_TEXT)
        elif isinstance(message, Resync):
            watch.resync()


async def _close_quietly(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await socket.close(code, reason)
