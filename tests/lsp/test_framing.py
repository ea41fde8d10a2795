"""The frame parser and JSON-RPC decoding, in process: every malformed case of the base
protocol, and properties over random chunkings and random garbage."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopls.lsp.framing import INVALID_REQUEST, PARSE_ERROR, BrokenMessage, FrameParser, Message
from loopls.lsp.jsonrpc import MAX_DEPTH, RpcError, decode, read_id

BODY = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "loopls/status", "params": None}).encode()


def frame(body: bytes = BODY, header: bytes = b"Content-Length: %d\r\n\r\n") -> bytes:
    return header % len(body) + body if b"%d" in header else header + body


def feed_all(data: bytes, parser: FrameParser | None = None) -> list:
    parser = parser or FrameParser()
    return parser.feed(data) + parser.expire()


@pytest.mark.parametrize("header", [
    b"Content-Length: %d\r\n\r\n", b"content-length: %d\r\n\r\n", b"CONTENT-LENGTH:%d\r\n\r\n",
    b"Content-Length: %d\n\n", b"Content-Length:   %d  \r\n\r\n",
    b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: %d\r\n\r\n",
    b"Content-Length: %d\r\nX-Unknown: ignored\r\n\r\n", b"\r\n\r\nContent-Length: %d\r\n\r\n",
])
def test_headers_any_case_and_line_end_are_read(header: bytes) -> None:
    assert feed_all(frame(header=header)) == [Message(BODY)]


@pytest.mark.parametrize(("header", "reason"), [
    (b"Content-Type: x\r\n\r\n", "no Content-Length"),
    (b"Content-Length: abc\r\n\r\n", "not a byte count"),
    (b"Content-Length: -5\r\n\r\n", "not a byte count"),
    (b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting"),
])
def test_a_header_without_a_usable_length_is_answered_with_the_body_id(header: bytes, reason: str) -> None:
    events = feed_all(header + BODY + frame())
    assert isinstance(events[0], BrokenMessage) and reason in events[0].reason
    assert events[0].code == PARSE_ERROR and read_id(events[0].prefix) == 3
    assert events[1:] == [Message(BODY)]  # the next message is read as usual


def test_an_announced_length_over_the_limit_is_skipped_without_being_stored() -> None:
    parser = FrameParser(max_body=1000)
    events = parser.feed(b"Content-Length: 99999999999\r\n\r\n" + BODY + b"x" * 100_000)
    assert events == [] and len(parser._body) < 5000  # skipping, with only a prefix kept
    events = parser.feed(frame())  # a header line ends the skip: the length was a lie
    assert isinstance(events[0], BrokenMessage) and events[0].code == INVALID_REQUEST
    assert "over the limit" in events[0].reason and read_id(events[0].prefix) == 3
    assert events[1:] == [Message(BODY)]


def test_an_announced_length_over_the_limit_really_sent_is_skipped_whole() -> None:
    parser = FrameParser(max_body=100)
    big = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "x", "params": {"text": "y" * 500}}).encode()
    events = feed_all(frame(big) + frame(), parser)
    assert [type(e) for e in events] == [BrokenMessage, Message]
    assert read_id(events[0].prefix) == 9 and events[1] == Message(BODY)


def test_a_body_shorter_than_announced_ends_at_the_next_header() -> None:
    events = feed_all(b"Content-Length: %d\r\n\r\n" % (len(BODY) + 40) + BODY + frame())
    assert isinstance(events[0], BrokenMessage) and "ended after" in events[0].reason
    assert read_id(events[0].prefix) == 3 and events[1:] == [Message(BODY)]


def test_a_body_longer_than_announced_is_cut_and_its_tail_skipped_quietly() -> None:
    events = feed_all(b"Content-Length: 20\r\n\r\n" + BODY + frame())
    assert events[0] == Message(BODY[:20])  # invalid JSON: the server answers -32700 for it
    assert isinstance(events[1], BrokenMessage) and events[1].code is None  # nothing more to answer
    assert events[2:] == [Message(BODY)]


def test_a_short_body_and_then_silence_expires() -> None:
    parser = FrameParser()
    assert parser.feed(b"Content-Length: 500\r\n\r\n" + BODY) == [] and parser.pending
    (event,) = parser.expire()
    assert "incomplete" in event.reason and read_id(event.prefix) == 3
    assert not parser.pending and parser.feed(frame()) == [Message(BODY)]


def test_data_without_a_header_is_answered_once() -> None:
    events = feed_all(BODY + b"\r\n" + frame())
    assert len(events) == 2 and events[0].code == PARSE_ERROR and read_id(events[0].prefix) == 3
    assert events[1] == Message(BODY)


def test_an_endless_header_line_does_not_grow_memory() -> None:
    parser = FrameParser()
    for _ in range(100):
        parser.feed(b"X" * 100_000)
    assert len(parser._buf) + len(parser._body) < 10_000
    assert parser.feed(frame())[-1] == Message(BODY)


@settings(max_examples=200, derandomize=True, deadline=None, database=None)
@given(st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_any_chunking_gives_the_same_messages(bodies: list[bytes], rng: random.Random) -> None:
    stream = b"".join(frame(b) for b in bodies)
    parser, events, at = FrameParser(), [], 0
    while at < len(stream):
        step = rng.randrange(1, 40)
        events += parser.feed(stream[at:at + step])
        at += step
    assert [e for e in events if isinstance(e, Message)] == [Message(b) for b in bodies]


@settings(max_examples=300, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.randoms(use_true_random=False))
def test_after_any_garbage_the_next_message_is_read(garbage: bytes, rng: random.Random) -> None:
    """Whatever came before, a message sent after a complete header line of another is read."""
    stream = garbage + frame() + frame()
    parser, events, at = FrameParser(), [], 0
    while at < len(stream):
        step = rng.randrange(1, 64)
        events += parser.feed(stream[at:at + step])
        at += step
    assert events and events[-1] == Message(BODY)
    assert not parser.pending


# -- JSON-RPC -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "code", "fragment", "msg_id"), [
    (b"{abc}", PARSE_ERROR, "invalid JSON", None),
    (b'{"jsonrpc": "2.0", "id": 4, "method": "x", "params": NaN}', PARSE_ERROR, "NaN is not a JSON number", 4),
    (b'{"jsonrpc": "2.0", "id": 4, "method": "x", "params": {"a": "\xff"}}', PARSE_ERROR, "invalid JSON", 4),
    (b"[1, 2]", INVALID_REQUEST, "batch", None),
    (b'"text"', INVALID_REQUEST, "JSON object", None),
    (b'{"id": 5, "method": "x"}', INVALID_REQUEST, '"jsonrpc"', 5),
    (b'{"jsonrpc": "2.0", "id": 5}', INVALID_REQUEST, "no method", 5),
    (b'{"jsonrpc": "2.0", "id": 5, "method": 7}', INVALID_REQUEST, "method must be a string", 5),
    (b'{"jsonrpc": "2.0", "id": true, "method": "x"}', INVALID_REQUEST, "integer or a string", None),
    (b"[" * 200_000 + b"]" * 200_000, INVALID_REQUEST, f"deeper than {MAX_DEPTH}", None),
    (b'{"jsonrpc": "2.0", "id": 6, "method": "x", "params": ' + b"[" * 500 + b"]" * 500 + b"}",
     INVALID_REQUEST, "deeper", 6),
])
def test_messages_that_cannot_be_handled(body: bytes, code: int, fragment: str, msg_id) -> None:
    with pytest.raises(RpcError) as info:
        decode(body)
    assert info.value.code == code and fragment in info.value.message and info.value.id == msg_id
    assert info.value.reply


def test_responses_are_never_answered() -> None:
    with pytest.raises(RpcError) as info:
        decode(b'{"jsonrpc": "1.0", "id": 1, "result": null}')
    assert not info.value.reply


def test_params_default_to_null_and_lone_surrogates_become_replacement_characters() -> None:
    assert decode(b'{"jsonrpc": "2.0", "id": 1, "method": "loopls/status"}')["params"] is None
    message = decode(b'{"jsonrpc": "2.0", "method": "x", "params": {"t": "a\\ud800b\\ud83d\\ude00"}}')
    assert message["params"]["t"] == "a\ufffdb\U0001f600"  # the pair stays one character


@pytest.mark.parametrize(("prefix", "msg_id"), [
    (b'{"jsonrpc": "2.0", "id": 12, "method": "x", "params": {"text": "cut', 12),
    (b'{"method": "x", "params": {"id": 5}, "id": "abc", "jsonrpc"', "abc"),
    (b'{"params": {"text": "never ends', None),
    (b'{"id": true}', None),
    (b"garbage", None),
    (b"", None),
])
def test_read_id_takes_only_the_top_level_id(prefix: bytes, msg_id) -> None:
    assert read_id(prefix) == msg_id
