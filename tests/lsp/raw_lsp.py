"""A raw LSP client for hostile-input tests and `bench/fuzz_report.py`: it writes any bytes to
a real `loopls lsp` process and reads its replies, which typed clients (pytest-lsp) cannot do.

The server's stdout is read on a thread into a queue of decoded messages, so a test can wait
for one reply with a deadline and never blocks on a server that stays silent.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SERVER = [sys.executable, "-m", "loopls.lsp", "lsp"]
# Error codes that answer a client's mistake; -32603 (InternalError) is the server's own.
CLIENT_ERROR_CODES = {-32700, -32600, -32601, -32602, -32002, -32800, -32801, -32803}


def frame(message: Any) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class RawServer:
    def __init__(self, args: tuple[str, ...] = (), cwd: Path | None = None, command: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self._stderr = tempfile.TemporaryFile()
        self._final_stderr = ""
        self.proc = subprocess.Popen([*(command or SERVER), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, cwd=cwd, env=env)
        self._messages: queue.Queue[dict | None] = queue.Queue()
        self._replies: dict[Any, list[dict]] = {}
        self.notifications: list[dict] = []
        self._ids = itertools.count(1_000_000)
        threading.Thread(target=self._read, daemon=True).start()

    # -- reading ------------------------------------------------------------------------------

    def _read(self) -> None:
        """Parse the server's output strictly: a framing error here is the server's bug."""
        out = self.proc.stdout
        while True:
            headers = {}
            while (line := out.readline()) not in (b"\r\n", b""):
                key, _, value = line.decode("ascii").partition(":")
                headers[key.strip().lower()] = value.strip()
            if not line:
                self._messages.put(None)
                return
            self._messages.put(json.loads(out.read(int(headers["content-length"]))))

    def _pump(self, timeout: float) -> bool:
        """Take one message off the queue; False when none came or the stream ended."""
        try:
            message = self._messages.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return False
        if message is None:
            self._messages.put(None)  # keep reporting the end
            return False
        if "method" in message:
            self.notifications.append(message)
            if "id" in message:  # a request from the server (configuration, progress): answer null
                self.send_bytes(frame({"jsonrpc": "2.0", "id": message["id"], "result": None}))
        else:
            self._replies.setdefault(message.get("id"), []).append(message)
        return True

    def reply(self, msg_id: Any, timeout: float = 30.0) -> dict | None:
        """The reply to `msg_id` (None when none came within `timeout`)."""
        deadline = time.monotonic() + timeout
        while not self._replies.get(msg_id):
            if not self._pump(deadline - time.monotonic()) and time.monotonic() >= deadline:
                return None
            if self.proc.poll() is not None and self._messages.empty() and not self._replies.get(msg_id):
                return None
        return self._replies[msg_id].pop(0)

    def drain(self, wait: float = 0.0) -> list[dict]:
        """Every reply that arrived (within `wait` seconds), the id-null ones included."""
        deadline = time.monotonic() + wait
        while self._pump(deadline - time.monotonic()):
            pass
        out = [m for replies in self._replies.values() for m in replies]
        self._replies.clear()
        return out

    # -- writing ------------------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def new_id(self) -> int:
        return next(self._ids)

    def request(self, method: str, params: Any = None, timeout: float = 30.0) -> dict | None:
        msg_id = self.new_id()
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send_bytes(frame(message))
        return self.reply(msg_id, timeout)

    def notify(self, method: str, params: Any = None) -> None:
        self.send_bytes(frame({"jsonrpc": "2.0", "method": method, "params": params}))

    def initialize(self, root: Path | None = None, options: dict | None = None) -> dict:
        reply = self.request("initialize", {"processId": os.getpid(), "rootUri": root.as_uri() if root else None,
                                            "capabilities": {}, "initializationOptions": options or {}}, 120)
        assert reply is not None and "result" in reply, reply
        self.notify("initialized", {})
        return reply["result"]

    def answers(self, timeout: float = 30.0) -> bool:
        """Whether the server still answers a well-formed request, after whatever came before.

        Two requests go out together: the first may be taken into a broken message still
        pending from earlier input (its header line ends that message); the second is then
        read on its own and must succeed."""
        first, second = self.new_id(), self.new_id()
        self.send_bytes(b"".join(frame({"jsonrpc": "2.0", "id": i, "method": "loopls/status", "params": None})
                                 for i in (first, second)))
        reply = self.reply(second, timeout)
        self._replies.pop(first, None)
        return reply is not None and "result" in reply

    # -- ending -------------------------------------------------------------------------------

    def stderr(self) -> str:
        """What the server logged so far (all of it, once closed)."""
        if self._stderr.closed:
            return self._final_stderr
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def close(self, timeout: float = 30.0) -> int | None:
        """shutdown + exit; the exit code (None if the server had to be killed)."""
        try:
            if self.proc.poll() is None:
                self.request("shutdown", None, timeout)
                self.notify("exit")
            return self.proc.wait(timeout)
        except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
            return None
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._final_stderr = self.stderr()
            self._stderr.close()
