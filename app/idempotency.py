"""``Idempotency-Key`` on mutating routes: a retried request gets the first response again.

A client that retries ``POST …/confirm`` after a timeout must not create two orders. Keys are
scoped to the caller and kept in PostgreSQL for 24 hours:

- a new key: the request runs, and its response (unless a 5xx, which may be retried) is kept;
- the same key and the same request again: the kept response, with ``Idempotent-Replayed:
  true``, and nothing is done again;
- the same key with another method, path or body: 422 ``idempotency_key_reused``;
- the same key while the first request is still running: 409 ``idempotency_in_progress``
  (a claim left by a process that died is taken over after ``CLAIM_LEASE``).

5xx and 409 answers are not kept: both tell the client to try again, which must be able to
succeed under the same key.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPRequestEvent,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import Principal
from app.errors import ApiError
from app.persistence.tables import idempotency_keys

KEY_LIFETIME = timedelta(hours=24)
CLAIM_LEASE = timedelta(seconds=60)
MAX_BODY_BYTES = 1 << 20  # the app's own request limit; read no more than that here
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_KEY_LENGTH = 200
# Routes with their own exactly-once mechanism, or no caller to scope a key to.
EXEMPT_PREFIXES = ("/api/v1/webhooks/", "/api/v1/sessions")


def _request_hash(method: str, path: str, query: bytes, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes) -> Receive:
    sent = False

    async def receive() -> ReceiveMessage:
        nonlocal sent
        if not sent:
            sent = True
            event: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
            return event
        return {"type": "http.disconnect"}

    return receive


async def _send_problem(scope: Scope, send: Send, error: ApiError) -> None:
    """Answer from the middleware with the same problem body the app would send."""
    body = msgspec.json.encode(error.to_response(None).content)  # type: ignore[arg-type]
    await _respond(send, error.status_code, [(b"content-type", b"application/problem+json")], body)


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": headers,
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)


def _idempotent_caller(scope: HTTPScope) -> tuple[Principal, str] | None:
    """The caller and their ``Idempotency-Key``, for a request the key applies to; else None."""
    headers = dict(scope.get("headers", []))
    key = headers.get(b"idempotency-key", b"").decode("latin-1").strip()
    path: str = scope["path"]
    user = scope.get("user")
    if (
        not key
        or scope["method"] not in MUTATING
        or not path.startswith("/api/")
        or path.startswith(EXEMPT_PREFIXES)
        or not isinstance(user, Principal)
    ):
        return None
    return user, key


class IdempotencyMiddleware(ASGIMiddleware):
    """Replays the first response to a repeated ``Idempotency-Key`` (see module docstring)."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["type"] != ScopeType.HTTP:
            await next_app(scope, receive, send)
            return
        caller = _idempotent_caller(scope)
        if caller is None:
            await next_app(scope, receive, send)
            return
        user, key = caller
        if len(key) > MAX_KEY_LENGTH:
            await _send_problem(
                scope, send, ApiError(400, "validation_error", "Idempotency-Key: too long")
            )
            return

        try:
            body = await _read_body(receive)
        except BodyTooLarge:
            await _send_problem(
                scope, send, ApiError(413, "payload_too_large", "the request body is too large")
            )
            return
        request_hash = _request_hash(
            scope["method"], scope["path"], scope.get("query_string", b""), body
        )
        stored = await self._claim(user.user_id, key, request_hash)
        if stored is not None:
            await self._answer_from_store(scope, send, stored, request_hash)
            return
        await self._run_and_keep(scope, body, send, next_app, user.user_id, key)

    async def _answer_from_store(
        self, scope: Scope, send: Send, stored: dict[str, Any], request_hash: str
    ) -> None:
        """The key is taken: refuse another request under it, or replay the kept response."""
        if stored["request_hash"] != request_hash:
            await _send_problem(
                scope,
                send,
                ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                ),
            )
        elif stored["status_code"] is None:
            await _send_problem(
                scope,
                send,
                ApiError(
                    409,
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still being handled",
                ),
            )
        else:
            await self._replay(send, stored)

    async def _run_and_keep(
        self, scope: Scope, body: bytes, send: Send, next_app: ASGIApp, user_id: str, key: str
    ) -> None:
        """Run the request this key claimed, then keep its response (or free the key)."""
        captured: dict[str, Any] = {"status": 500, "content_type": None, "body": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        captured["content_type"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        try:
            await next_app(scope, _replaying(body), capture)
        finally:
            await self._settle(user_id, key, captured)

    async def _claim(self, user_id: str, key: str, request_hash: str) -> dict[str, Any] | None:
        """Take the key for this request (None), or return what is already stored under it."""
        async with self.engine.begin() as conn:
            mine = (idempotency_keys.c.user_id == user_id) & (idempotency_keys.c.key == key)
            expired = idempotency_keys.c.created_at < func.now() - KEY_LIFETIME
            abandoned = idempotency_keys.c.status_code.is_(None) & (
                idempotency_keys.c.created_at < func.now() - CLAIM_LEASE
            )
            await conn.execute(delete(idempotency_keys).where(mine & (expired | abandoned)))
            claimed = await conn.execute(
                insert(idempotency_keys)
                .values(user_id=user_id, key=key, request_hash=request_hash)
                .on_conflict_do_nothing()
                .returning(idempotency_keys.c.key)
            )
            if claimed.first() is not None:
                return None
            row = (
                (
                    await conn.execute(
                        select(idempotency_keys).where(
                            idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key
                        )
                    )
                )
                .mappings()
                .one()
            )
            return dict(row)

    async def _settle(self, user_id: str, key: str, captured: dict[str, Any]) -> None:
        where = (idempotency_keys.c.user_id == user_id) & (idempotency_keys.c.key == key)
        async with self.engine.begin() as conn:
            if captured["status"] >= 500 or captured["status"] == 409:
                await conn.execute(delete(idempotency_keys).where(where))  # may be retried
            else:
                await conn.execute(
                    update(idempotency_keys)
                    .where(where)
                    .values(
                        status_code=captured["status"],
                        content_type=captured["content_type"],
                        body=b"".join(captured["body"]),
                    )
                )

    @staticmethod
    async def _replay(send: Send, stored: dict[str, Any]) -> None:
        headers = [(b"idempotent-replayed", b"true")]
        if stored["content_type"]:
            headers.append((b"content-type", stored["content_type"].encode("latin-1")))
        await _respond(send, stored["status_code"], headers, stored["body"] or b"")


async def purge_expired_keys(engine: AsyncEngine) -> int:
    """Drop keys older than 24 hours (run by the sweeper)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.created_at < func.now() - KEY_LIFETIME
            )
        )
    return int(result.rowcount or 0)
