"""The server's message loop over stdio or TCP, in place of pygls' reader.

pygls' reader matches only `Content-Length: N\\r\\n` exactly, allocates whatever length is
announced, and on any other framing it waits forever; invalid JSON gets no answer. Here the
bytes go through `framing.FrameParser` (which always finds the next message) and
`jsonrpc.decode` (which answers what cannot be handled with -32700 or -32600), and only then
reach the protocol. The loop ends on `exit` (the protocol's exit code) or when the client
closes the stream (0 after `shutdown`, else 1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import BinaryIO

from pygls.exceptions import JsonRpcException
from pygls.io_ import StdoutWriter
from pygls.server import JsonRPCServer

from .framing import BrokenMessage, FrameParser, Message
from .jsonrpc import RpcError, decode, read_id
from .protocol import LooplsProtocol

log = logging.getLogger(__name__)

IDLE_S = 5.0  # a message left incomplete this long is answered as broken
_CHUNK = 65536


async def serve(protocol: LooplsProtocol, read: Callable[[], Awaitable[bytes]], idle_s: float = IDLE_S,
                parser: FrameParser | None = None) -> int:
    """Read and dispatch messages until `exit` or the end of the stream; the exit code."""
    parser = parser or FrameParser()
    pending: asyncio.Future[bytes] | None = None
    try:
        while protocol.exit_code is None:
            if pending is None:
                pending = asyncio.ensure_future(read())
            # the read stays pending across an idle timeout: no bytes are lost to it
            done, _ = await asyncio.wait({pending}, timeout=idle_s if parser.pending else None)
            if not done:
                events = parser.expire()
            else:
                chunk = _result(pending)
                pending = None
                if not chunk:
                    if parser.pending:
                        log.error("the client closed the connection in the middle of a message")
                    break
                events = parser.feed(chunk)
            for event in events:
                dispatch(protocol, event)
                if protocol.exit_code is not None:
                    break
                # messages take effect in order: an async handler (a configuration change) starts
                # before the next message of the same chunk is handled (a request reading it)
                await asyncio.sleep(0)
    except (BrokenPipeError, ConnectionError) as exc:
        log.error("connection to the client lost: %s", exc)
    finally:
        if pending is not None:
            pending.cancel()
    if protocol.exit_code is not None:
        return protocol.exit_code
    return 0 if protocol._shutdown else 1


def dispatch(protocol: LooplsProtocol, event: Message | BrokenMessage) -> None:
    """Hand one framed message to the protocol, or answer why it cannot be handled."""
    if isinstance(event, BrokenMessage):
        log.error("%s", event.reason)
        if event.code is not None:
            protocol.reply_error(read_id(event.prefix), event.code, event.reason)
        return
    try:
        data = decode(event.body)
    except RpcError as exc:
        log.error("%s", exc.message)
        if exc.reply:
            protocol.reply_error(exc.id, exc.code, exc.message)
        return
    try:
        message = protocol.structure_message(data)
    except JsonRpcException as exc:  # a notification or response that does not deserialize
        log.error("%s %s dropped: %s", "notification" if "method" in data else "response",
                  data.get("method", data.get("id")), exc.__cause__ or exc)
        return
    try:
        protocol.handle_message(message)
    except (BrokenPipeError, ConnectionError):
        raise
    # The loop boundary: one message must not end the server. handle_message is synchronous,
    # so a CancelledError out of it is a handler's (a cancelled future it asked), never this
    # loop being cancelled.
    except (Exception, asyncio.CancelledError):  # noqa: BLE001
        log.exception("cannot handle %s", data.get("method", "a response"))


def _result(read: asyncio.Future[bytes]) -> bytes:
    try:
        return read.result()
    except (OSError, ValueError) as exc:  # a reset socket or a closed stdin reads as the end
        log.error("reading from the client failed: %s", exc)
        return b""


class _ThreadReader:
    """Reads a blocking stream (stdin) on a daemon thread, a bounded queue ahead of the loop,
    so that a pending read never keeps the process alive after `exit`. It reads the file
    descriptor itself: a daemon thread blocked inside a buffered reader holds that reader's
    lock, and the interpreter aborts when it finds it held at shutdown."""

    def __init__(self, stream: BinaryIO) -> None:
        self._fd = stream.fileno()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
        threading.Thread(target=self._run, name="loopls-stdin", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, _CHUNK)
            except (OSError, ValueError):
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop).result()
            except (RuntimeError, asyncio.CancelledError):  # the loop is gone
                return
            if not chunk:
                return

    async def read(self) -> bytes:
        return await self._queue.get()


def run_stdio(server: JsonRPCServer, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
              idle_s: float = IDLE_S) -> int:
    """Serve one client over stdio; the exit code."""
    protocol = _protocol(server)
    protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))

    async def main() -> int:
        return await serve(protocol, _ThreadReader(stdin or sys.stdin.buffer).read, idle_s)

    return asyncio.run(main())


def run_tcp(server: JsonRPCServer, host: str, port: int, idle_s: float = IDLE_S) -> int:
    """Listen on host:port and serve the first client (one editor per server, as over stdio);
    the exit code. Later connections are closed while it is served."""
    protocol = _protocol(server)

    async def main() -> int:
        finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        busy = False

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal busy
            if busy:
                log.warning("refused a second connection while a client is being served")
                writer.close()
                return
            busy = True
            protocol.set_writer(writer)
            try:
                code = await serve(protocol, lambda: reader.read(_CHUNK), idle_s)
            finally:
                writer.close()
            if not finished.done():
                finished.set_result(code)

        listener = await asyncio.start_server(connection, host, port)
        log.info("listening on %s", ", ".join(str(s.getsockname()) for s in listener.sockets))
        async with listener:
            return await finished

    return asyncio.run(main())


def _protocol(server: JsonRPCServer) -> LooplsProtocol:
    if not isinstance(server.protocol, LooplsProtocol):
        raise TypeError("the loopls transport needs a LooplsProtocol")
    return server.protocol
