"""The LSP base protocol's framing (`Content-Length` header, blank line, JSON body) as a parser
that is fed bytes and returns whole message bodies, or why a message is broken.

It never trusts the sender. Header names are case-insensitive, lines may end in `\\n` alone,
unknown headers are ignored, an announced length over the limit is skipped without being
stored, and nothing a client sends can make the parser wait forever or lose its place.

Resynchronisation rests on one fact: a line `Content-Length: N` ended by a raw line break can
never occur inside a valid JSON body (JSON strings cannot hold raw line breaks, and outside
strings `Content-Length` is not JSON). Wherever it appears, the next message starts there. A
body cut short by the next message, a body that runs past its length, bytes between messages
and an announced length far larger than what was sent all end at the next such line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PARSE_ERROR = -32700
INVALID_REQUEST = -32600

MAX_BODY_BYTES = 128 * 1024 * 1024  # a 100 MB source file still fits, escaped
MAX_HEADER_BYTES = 8192
PREFIX_BYTES = 4096  # kept from a broken or skipped body, to read its id from
# Bytes scanned again after a chunk border, so that a header line split between two reads
# is still found; longer than any plausible `Content-Length: N` line.
_OVERLAP = 64

_NEXT_HEADER = re.compile(rb"content-length[ \t]*:[ \t]*\d+[ \t]*\r?\n", re.IGNORECASE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_HEADER_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:[ \t]*(.*?)[ \t]*")
_DIGITS = re.compile(rb"\d{1,19}")
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True)
class Message:
    body: bytes


@dataclass(frozen=True)
class BrokenMessage:
    """A message that cannot be read. `code` is the JSON-RPC error to answer with, or None
    when there is nothing to answer (the tail of a body longer than announced, whose start
    was already answered); `prefix` is the start of its body, to read the request id from."""

    reason: str
    code: int | None
    prefix: bytes = b""


Event = Message | BrokenMessage


class FrameParser:
    """Feed it the bytes of a stream in any chunking; it returns the events they complete."""

    def __init__(self, max_body: int = MAX_BODY_BYTES, max_header: int = MAX_HEADER_BYTES) -> None:
        self.max_body = max_body
        self.max_header = max_header
        self._buf = bytearray()  # header state: bytes not yet parsed
        self._in_body = False
        self._length = 0  # announced body length; -1 when unknown (skipping to the next header)
        self._keep = True  # store the body (False: skip it, keeping only a prefix)
        self._body = bytearray()
        self._received = 0
        self._reason = ""
        self._code: int | None = None
        self._after_body = False  # the last thing read was a whole body

    @property
    def pending(self) -> bool:
        """Mid-message: part of a header or body has arrived and the rest has not."""
        return self._in_body or bool(self._buf.strip(_WHITESPACE))

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        while data:
            if self._in_body:
                data = self._feed_body(data, events)
            else:
                self._buf += data
                data = self._parse_header()
        return events

    def expire(self) -> list[Event]:
        """Nothing more arrived for a while: end the partial message, so that a client that
        sent too little gets an answer instead of waiting on the server forever."""
        if self._in_body:
            event = self._broken(self._reason or f"message body incomplete ({self._got()} arrived, then nothing)")
            self._end_body()
            return [event]
        rest = bytes(self._buf.strip(_WHITESPACE))
        self._buf.clear()
        if not rest:
            return []
        if _HEADER_FIELD.fullmatch(rest.split(b"\n", 1)[0].rstrip(b"\r")):
            return [BrokenMessage("message header incomplete (no blank line after it)", PARSE_ERROR)]
        return [BrokenMessage("data without a Content-Length header", PARSE_ERROR, rest[:PREFIX_BYTES])]

    # -- header -------------------------------------------------------------------------------

    def _parse_header(self) -> bytes:
        """Parse the header the buffer starts with; returns the bytes that follow it (fed to
        the body), or b"" while the header is incomplete."""
        del self._buf[:len(self._buf) - len(self._buf.lstrip(_WHITESPACE))]
        pos = 0
        while self._buf:
            eol = self._buf.find(b"\n", pos, self.max_header + 1)
            if eol < 0:
                if len(self._buf) <= self.max_header:
                    return b""  # wait for the rest of the line
                return self._not_a_header(pos, "message header longer than {} bytes".format(self.max_header))
            line = bytes(self._buf[pos:eol]).rstrip(b"\r")
            if not line:
                block, rest = bytes(self._buf[:pos]), bytes(self._buf[eol + 1:])
                self._buf.clear()
                self._after_body = False
                self._start_body(block)
                return rest
            if _HEADER_FIELD.fullmatch(line) is None:
                return self._not_a_header(pos, f"malformed header line {_show(line)}")
            pos = eol + 1
        return b""

    def _not_a_header(self, pos: int, reason: str) -> bytes:
        """Bytes that are no header: skip them up to the next header line, answering once."""
        rest = bytes(self._buf[pos:])
        self._buf.clear()
        if pos == 0:
            reason = "data without a Content-Length header"
            if self._after_body:  # the tail of a body longer than its Content-Length
                self._after_body = False
                self._enter_body(-1, "bytes after a message body, past its Content-Length", None)
                return rest
        self._enter_body(-1, reason, PARSE_ERROR)
        return rest

    def _start_body(self, block: bytes) -> None:
        fields: dict[str, set[bytes]] = {}
        for line in block.split(b"\n"):
            match = _HEADER_FIELD.fullmatch(line.rstrip(b"\r"))
            if match is not None:  # every line was matched before; this only splits them
                fields.setdefault(match.group(1).decode("ascii").lower(), set()).add(match.group(2))
        values = fields.get("content-length", set())
        if len(values) != 1:
            reason = "conflicting Content-Length values" if values else "message header has no Content-Length"
            return self._enter_body(-1, reason, PARSE_ERROR)
        value = values.pop()
        if not _DIGITS.fullmatch(value):
            return self._enter_body(-1, f"Content-Length {_show(value)} is not a byte count", PARSE_ERROR)
        length = int(value)
        if length > self.max_body:
            return self._enter_body(length, f"message of {length} bytes is over the limit of {self.max_body} "
                                    "bytes; it was skipped", INVALID_REQUEST)
        self._enter_body(length, "", None)

    # -- body ---------------------------------------------------------------------------------

    def _enter_body(self, length: int, reason: str, code: int | None) -> None:
        """Read a body of `length` bytes (-1: up to the next header line); with a reason the
        body is already known to be broken and only its start is kept."""
        self._in_body, self._length = True, length
        self._keep = not reason
        self._reason, self._code = reason, code
        self._body = bytearray()
        self._received = 0

    def _feed_body(self, data: bytes, events: list[Event]) -> bytes:
        want = len(data) if self._length < 0 else min(len(data), self._length - self._received)
        chunk, rest = data[:want], data[want:]
        tail = self._tail()
        window = tail + chunk
        found = _NEXT_HEADER.search(window)
        if found is not None:  # the body ended early: the next message starts here
            if found.start() < len(tail):  # ... inside bytes already taken: give them back
                back = len(tail) - found.start()
                del self._body[len(self._body) - back:]
                self._received -= back
            else:
                self._take(chunk[:found.start() - len(tail)])
            if self._reason:
                events.append(self._broken(self._reason))
            else:
                events.append(self._broken(f"message body ended after {self._got()}: the next message's "
                                           "header came first"))
            self._end_body()
            return window[found.start():] + rest
        self._take(chunk)
        if self._received == self._length:
            if self._reason:
                events.append(self._broken(self._reason))
            else:
                events.append(Message(bytes(self._body)))
                self._after_body = True
            self._end_body()
        return rest

    def _tail(self) -> bytes:
        return bytes(self._body[len(self._body) - min(self._received, _OVERLAP):])

    def _take(self, chunk: bytes) -> None:
        self._received += len(chunk)
        self._body += chunk
        if not self._keep and len(self._body) > PREFIX_BYTES + _OVERLAP:
            # a skipped body keeps its start (for the id) and a tail (for a header line
            # split across reads), never the whole
            del self._body[PREFIX_BYTES:len(self._body) - _OVERLAP]

    def _got(self) -> str:
        return f"{self._received} of {self._length} bytes" if self._length >= 0 else f"{self._received} bytes"

    def _broken(self, reason: str) -> BrokenMessage:
        code = self._code if self._reason else PARSE_ERROR
        return BrokenMessage(reason, code, bytes(self._body[:min(PREFIX_BYTES, self._received)]))

    def _end_body(self) -> None:
        self._in_body = False
        self._body = bytearray()
        self._received = 0
        self._reason, self._code = "", None


def _show(value: bytes) -> str:
    return repr(value[:40].decode("utf-8", "replace"))
