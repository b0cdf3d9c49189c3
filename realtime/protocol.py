"""The WebSocket protocol of API.md "Real time", the frames the hub carries between processes,
and the sans-I/O state of one client's stream.

Server → client (JSON text frames, each with a ``type``):

- ``snapshot`` ``{version, cart}``: the whole cart view. Sent first, on ``resync``, and in
  place of an update whenever a client would otherwise see a version gap.
- ``update`` ``{version, event, cart}``: one change; versions rise by exactly one after the
  last snapshot or update. Payment events are ``member_payment_updated`` with ``user_id`` and
  ``payment`` (that member's payment).
- ``presence`` ``{online}``: the user ids connected now. Carries no version: presence is not
  part of the cart's history, so it never disturbs the update sequence.
- ``pong``, and ``error`` ``{code, detail}`` for a message the server does not understand.

Client → server: ``auth`` ``{token}`` (only as the first message, when the URL carries no
``token``), ``ping``, ``resync``.

The client rule: keep the version of the last snapshot or update; drop any update at or
below it; apply one exactly one above; on anything else (which the server never sends) send
``resync``. A snapshot always replaces the state.

Between processes every message travels as a :class:`HubFrame` on Redis channel
``teamcart:{id}``: one JSON header line (kind, version, the cart's members at that version)
and then the exact text every subscriber is sent, so a process decodes a frame once however
many of its sockets watch the cart.

:class:`ClientStream` is one socket's outgoing queue with the version rules above applied; it
does no I/O, so the rules are unit-tested without sockets.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from domain.events import EVENT_TYPES, MemberPaymentEvent
from realtime.cart_view import CartView, PaymentView

# --- close codes ------------------------------------------------------------------------------

CLOSE_UNAUTHENTICATED: Final = 4401
"""No token, a bad or expired one, or no ``auth`` message in time."""
CLOSE_NOT_A_MEMBER: Final = 4403
"""Not a member of the cart, or no longer one (removed while connected)."""
CLOSE_CART_NOT_FOUND: Final = 4404
CLOSE_TOO_SLOW: Final = 4408
"""The client fell more than the backlog behind; reconnect, and the snapshot catches it up."""
CLOSE_TRY_AGAIN_LATER: Final = 1013
"""The server could not subscribe to the cart's channel (Redis away); reconnect later."""

# --- server → client --------------------------------------------------------------------------


class Snapshot(msgspec.Struct, tag="snapshot", tag_field="type"):
    version: int
    cart: CartView


class Update(msgspec.Struct, tag="update", tag_field="type", omit_defaults=True):
    version: int
    event: str
    cart: CartView
    user_id: str | msgspec.UnsetType = msgspec.UNSET
    payment: PaymentView | msgspec.UnsetType = msgspec.UNSET


class Presence(msgspec.Struct, tag="presence", tag_field="type"):
    online: list[str]


class Reminder(msgspec.Struct, tag="reminder", tag_field="type"):
    """To a member who has something to do before ``deadline``: ``ready``, ``pay``, or (the
    host of a ready cart) ``confirm``."""

    deadline: datetime
    what: str


class Pong(msgspec.Struct, tag="pong", tag_field="type"):
    pass


class Error(msgspec.Struct, tag="error", tag_field="type"):
    code: str
    detail: str


MEMBER_PAYMENT_UPDATED: Final = "member_payment_updated"

_encoder = msgspec.json.Encoder()
PONG_TEXT: Final = _encoder.encode(Pong()).decode()


def encode_text(message: Snapshot | Update | Presence | Pong | Error) -> str:
    return _encoder.encode(message).decode()


def update_message(version: int, event_type: str, event: dict[str, Any], cart: CartView) -> Update:
    """The update for one outbox event: payment events name the member and their payment."""
    event_class = EVENT_TYPES.get(event_type)
    if event_class is not None and issubclass(event_class, MemberPaymentEvent):
        user_id = str(event.get("user_id", ""))
        member = next((m for m in cart.members if m.user_id == user_id), None)
        return Update(
            version=version,
            event=MEMBER_PAYMENT_UPDATED,
            cart=cart,
            user_id=user_id,
            payment=member.payment if member is not None else msgspec.UNSET,
        )
    return Update(version=version, event=event_type, cart=cart)


# --- client → server --------------------------------------------------------------------------


class Auth(msgspec.Struct, tag="auth", tag_field="type"):
    token: str


class Ping(msgspec.Struct, tag="ping", tag_field="type"):
    pass


class Resync(msgspec.Struct, tag="resync", tag_field="type"):
    pass


ClientMessage = Auth | Ping | Resync
_client_decoder = msgspec.json.Decoder(ClientMessage)


def decode_client_message(data: str | bytes) -> ClientMessage:
    """Raises ``msgspec.DecodeError`` (or ``ValidationError``) for anything else."""
    message: ClientMessage = _client_decoder.decode(data)
    return message


# --- hub frames -------------------------------------------------------------------------------

FrameKind = Literal["update", "snapshot", "presence", "probe", "reminder"]


class FrameHeader(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: FrameKind
    version: int = 0
    members: list[str] = msgspec.field(default_factory=list)
    nonce: str = ""


_header_decoder = msgspec.json.Decoder(FrameHeader)
_snapshot_decoder = msgspec.json.Decoder(dict[str, Any])


def encode_frame(header: FrameHeader, text: bytes | str = b"") -> bytes:
    body = text.encode() if isinstance(text, str) else text
    return _encoder.encode(header) + b"\n" + body


def update_frame(message: Update) -> bytes:
    members = [member.user_id for member in message.cart.members]
    header = FrameHeader(kind="update", version=message.version, members=members)
    return encode_frame(header, _encoder.encode(message))


def snapshot_frame(message: Snapshot) -> bytes:
    members = [member.user_id for member in message.cart.members]
    header = FrameHeader(kind="snapshot", version=message.version, members=members)
    return encode_frame(header, _encoder.encode(message))


def presence_frame(online: Iterable[str]) -> bytes:
    return encode_frame(FrameHeader(kind="presence"), _encoder.encode(Presence(sorted(online))))


def reminder_frame(user_ids: Iterable[str], reminder: Reminder) -> bytes:
    """A reminder for those members' sockets only (``members`` names them)."""
    header = FrameHeader(kind="reminder", members=sorted(user_ids))
    return encode_frame(header, _encoder.encode(reminder))


def probe_frame(nonce: str) -> bytes:
    return encode_frame(FrameHeader(kind="probe", nonce=nonce))


class HubFrame:
    """One decoded frame, shared by every local subscriber of the cart."""

    __slots__ = ("_as_snapshot", "kind", "members", "nonce", "text", "version")

    def __init__(self, header: FrameHeader, text: str) -> None:
        self.kind: FrameKind = header.kind
        self.version = header.version
        self.members = frozenset(header.members)
        self.nonce = header.nonce
        self.text = text
        self._as_snapshot: str | None = None

    @classmethod
    def decode(cls, data: bytes) -> HubFrame:
        head, _, body = data.partition(b"\n")
        return cls(_header_decoder.decode(head), body.decode())

    def snapshot_text(self) -> str:
        """This update as a snapshot (for a client that missed the previous version)."""
        if self.kind == "snapshot":
            return self.text
        if self._as_snapshot is None:
            message = _snapshot_decoder.decode(self.text)
            converted = {"type": "snapshot", "version": self.version, "cart": message["cart"]}
            self._as_snapshot = _encoder.encode(converted).decode()
        return self._as_snapshot


# --- one client's stream ----------------------------------------------------------------------


class Action(enum.Enum):
    SEND = "send"
    """Send ``text``."""
    READ_SNAPSHOT = "read_snapshot"
    """Read the cart view, send it as a snapshot, then call :meth:`ClientStream.snapshot_sent`."""
    CLOSE = "close"
    """Close the socket with ``code``; nothing more is sent."""


class _Marker(enum.Enum):
    SNAPSHOT = "snapshot"


class ClientStream:
    """What one socket is sent next, in order, with the version rules applied.

    Frames and control requests queue in arrival order. The queue starts with a snapshot
    request, so whatever arrives while the snapshot is read waits behind it and is then
    filtered against its version. More than ``max_backlog`` queued frames means the client
    is not keeping up: :meth:`offer` refuses, and the caller disconnects it.
    """

    __slots__ = (
        "_newest",
        "_queue",
        "_snapshot_pending",
        "closed",
        "max_backlog",
        "user_id",
        "version",
    )

    def __init__(self, user_id: str, max_backlog: int) -> None:
        self.user_id = user_id
        self.max_backlog = max_backlog
        self.version: int | None = None
        self.closed = False
        # A list, not a deque: it is nearly always empty, and an empty deque costs 600 bytes
        # per connection where an empty list costs 56.
        self._queue: list[HubFrame | str | _Marker] = [_Marker.SNAPSHOT]
        self._snapshot_pending = True
        self._newest = 0  # the highest version offered so far

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def offer(self, frame: HubFrame) -> bool:
        """Queue a frame; ``False`` when the backlog is full (the stream is then closed)."""
        if self.closed:
            return True
        if frame.kind == "probe":
            return True
        if frame.kind != "presence":
            if frame.version <= self._newest:
                return True  # a second copy (the hub's own, then Redis's): nothing new
            self._newest = frame.version
        if len(self._queue) >= self.max_backlog:
            self.close()
            return False
        self._queue.append(frame)
        return True

    def request_snapshot(self) -> None:
        if not self._snapshot_pending and not self.closed:
            self._snapshot_pending = True
            self._queue.append(_Marker.SNAPSHOT)

    def request_text(self, text: str) -> None:
        """Queue a reply of the server's own (``pong``, ``error``) in order with the rest."""
        if not self.closed:
            self._queue.append(text)

    def close(self) -> None:
        self.closed = True
        self._queue.clear()

    def snapshot_sent(self, version: int) -> None:
        self.version = version

    def next_action(self) -> tuple[Action, str, int] | None:
        """The next thing to do as ``(action, text, code)``, or ``None`` when idle."""
        while self._queue and not self.closed:
            item = self._queue.pop(0)
            if item is _Marker.SNAPSHOT:
                self._snapshot_pending = False
                return Action.READ_SNAPSHOT, "", 0
            if isinstance(item, str):
                return Action.SEND, item, 0
            if item.kind == "presence":
                return Action.SEND, item.text, 0
            if self.version is None or item.version <= self.version:
                continue  # already covered by the snapshot or an earlier update
            if self.user_id not in item.members:
                self.close()
                return Action.CLOSE, "", CLOSE_NOT_A_MEMBER
            follows = item.kind == "update" and item.version == self.version + 1
            self.version = item.version
            return Action.SEND, item.text if follows else item.snapshot_text(), 0
        return None
