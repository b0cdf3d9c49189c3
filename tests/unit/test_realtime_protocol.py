"""The WebSocket protocol's messages and one client's stream rules, without sockets."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from realtime.cart_view import CartView, MemberView, PaymentView
from realtime.protocol import (
    CLOSE_NOT_A_MEMBER,
    PONG_TEXT,
    Action,
    Auth,
    ClientStream,
    HubFrame,
    Ping,
    Resync,
    Snapshot,
    decode_client_message,
    presence_frame,
    probe_frame,
    snapshot_frame,
    update_frame,
    update_message,
)


def member(user_id: str, status: str = "none") -> MemberView:
    return MemberView(
        user_id=user_id,
        display_name=user_id.title(),
        role="host" if user_id == "ana" else "guest",
        ready=False,
        online=False,
        subtotal_minor=0,
        share_minor=0,
        payment=PaymentView(status=status, method=None, amount_minor=0),
    )


def cart(version: int, *user_ids: str) -> CartView:
    return CartView(
        id="c",
        store_id="s",
        status="open",
        version=version,
        quote_version=0,
        currency="USD",
        invite_code="x",
        deadline=None,
        host_user_id="ana",
        subtotal_minor=0,
        delivery_fee_minor=0,
        tax_minor=0,
        tip_minor=0,
        discount_minor=0,
        total_minor=0,
        order_id=None,
        members=[member(user_id) for user_id in user_ids or ("ana", "ben")],
        items=[],
    )


def update(version: int, *user_ids: str, event: str = "item_added") -> HubFrame:
    message = update_message(version, event, {}, cart(version, *user_ids))
    return HubFrame.decode(update_frame(message))


def drain(stream: ClientStream, snapshot_version: int | None = None) -> list[dict[str, Any]]:
    """Run the stream like its writer would; a snapshot read answers ``snapshot_version``."""
    sent: list[dict[str, Any]] = []
    while (step := stream.next_action()) is not None:
        action, text, code = step
        if action is Action.SEND:
            sent.append(json.loads(text))
        elif action is Action.READ_SNAPSHOT:
            assert snapshot_version is not None
            sent.append({"type": "snapshot", "version": snapshot_version})
            stream.snapshot_sent(snapshot_version)
        else:
            sent.append({"type": "close", "code": code})
    return sent


def test_the_snapshot_comes_first_and_older_updates_are_dropped() -> None:
    stream = ClientStream("ben", max_backlog=10)
    for version in (4, 5, 6, 7):  # arrived while the snapshot was being read
        assert stream.offer(update(version))
    sent = drain(stream, snapshot_version=5)
    assert [(m["type"], m["version"]) for m in sent] == [
        ("snapshot", 5),
        ("update", 6),
        ("update", 7),
    ]


def test_a_gap_becomes_a_snapshot_and_duplicates_vanish() -> None:
    stream = ClientStream("ben", max_backlog=10)
    drain(stream, snapshot_version=1)
    for version in (2, 2, 4, 3, 5):
        stream.offer(update(version))
    sent = drain(stream)
    assert [(m["type"], m["version"]) for m in sent] == [
        ("update", 2),
        ("snapshot", 4),
        ("update", 5),
    ]
    assert "event" not in sent[1]
    assert sent[1]["cart"]["version"] == 4


def test_presence_pong_and_resync_keep_their_place() -> None:
    stream = ClientStream("ben", max_backlog=10)
    drain(stream, snapshot_version=1)
    stream.offer(HubFrame.decode(presence_frame({"ben", "ana"})))
    stream.request_text(PONG_TEXT)
    stream.offer(HubFrame.decode(probe_frame("n")))  # never forwarded
    stream.request_snapshot()
    stream.request_snapshot()  # one pending is enough
    sent = drain(stream, snapshot_version=3)
    assert sent == [
        {"type": "presence", "online": ["ana", "ben"]},
        {"type": "pong"},
        {"type": "snapshot", "version": 3},
    ]


def test_a_removed_member_is_closed_before_seeing_the_cart() -> None:
    stream = ClientStream("ben", max_backlog=10)
    drain(stream, snapshot_version=1)
    stream.offer(update(2, "ana", event="member_left"))
    stream.offer(update(3, "ana"))
    assert drain(stream) == [{"type": "close", "code": CLOSE_NOT_A_MEMBER}]
    assert stream.closed


def test_a_full_backlog_refuses_and_closes_the_stream() -> None:
    stream = ClientStream("ben", max_backlog=3)
    drain(stream, snapshot_version=1)
    assert all(stream.offer(update(v)) for v in (2, 3, 4))
    assert not stream.offer(update(5))
    assert stream.closed
    assert stream.next_action() is None


def test_a_second_copy_of_a_frame_takes_no_room_in_the_backlog() -> None:
    """The projecting process hands its sockets each frame, then Redis brings it again."""
    stream = ClientStream("ben", max_backlog=3)
    drain(stream, snapshot_version=1)
    for version in (2, 3, 4):
        assert stream.offer(update(version))
        assert stream.offer(update(version))
    assert stream.backlog == 3
    assert not stream.closed
    assert [m["version"] for m in drain(stream)] == [2, 3, 4]


def test_payment_events_name_the_member_and_their_payment() -> None:
    view = cart(7, "ana", "ben")
    view.members[1].payment = PaymentView(status="cod_committed", method="cod", amount_minor=900)
    message = update_message(7, "cod_committed", {"user_id": "ben"}, view)
    wire = json.loads(msgspec.json.encode(message))
    assert wire["type"] == "update"
    assert wire["event"] == "member_payment_updated"
    assert wire["user_id"] == "ben"
    assert wire["payment"] == {"status": "cod_committed", "method": "cod", "amount_minor": 900}
    plain = json.loads(msgspec.json.encode(update_message(8, "cart_locked", {}, view)))
    assert "user_id" not in plain
    assert "payment" not in plain


def test_snapshot_frames_pass_their_text_through() -> None:
    frame = HubFrame.decode(snapshot_frame(Snapshot(version=9, cart=cart(9))))
    assert frame.kind == "snapshot"
    assert frame.members == {"ana", "ben"}
    assert json.loads(frame.snapshot_text())["version"] == 9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"ping"}', Ping()),
        ('{"type":"resync"}', Resync()),
        ('{"type":"auth","token":"t"}', Auth(token="t")),
    ],
)
def test_client_messages_decode(text: str, expected: object) -> None:
    assert decode_client_message(text) == expected


@pytest.mark.parametrize("text", ['{"type":"dance"}', "not json", '{"type":"auth"}'])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_client_message(text)
