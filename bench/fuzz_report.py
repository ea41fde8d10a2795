"""Hostile inputs against the real language server and the real command line: per category,
the inputs tried and how many crashed the server, hung it, or got a wrong answer.

    python bench/fuzz_report.py [--seed 0] [--scale 1.0] [--timeout 15] [--pythonpath DIR]

The inputs come from the generators the fuzz tests use (`tests/lsp/hostile.py`), drawn from
a seeded `random.Random`, so two runs (or two builds) see the same inputs. `--pythonpath`
puts DIR first on the servers' and CLI processes' PYTHONPATH: a folder holding `loopls/lsp`,
`loopls/context`, ... of another checkout runs that build under the same inputs.

- crash: the server process ended (or a CLI run exited with a code other than 0/1/2, or
  printed a traceback);
- hang: a well-formed request sent after the input got no answer within `--timeout` s (for
  a request with hostile params: no answer even after `$/cancelRequest`); the server is then
  restarted;
- wrong: an InternalError (-32603) reply, a traceback in the server log, a lifecycle answer
  other than the specification's, or a CLI error that is not exactly one line.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lsp"))

from hostile import (  # noqa: E402
    FRAMING_CATEGORIES, hostile_argv, hostile_stream, mutate, notification_templates, request_templates)
from raw_lsp import CLIENT_ERROR_CODES, SERVER, RawServer, frame  # noqa: E402

SOURCE = "def f(x):\n    return x\n\n\ndef g(y):\n    if y:\n        return 1\n    return 2\n"


@dataclass
class Row:
    category: str
    tried: int = 0
    crashes: int = 0
    hangs: int = 0
    wrong: int = 0
    seconds: float = 0.0


class Session:
    """One server at a time, restarted after a crash or a hang."""

    def __init__(self, project: Path, env: dict[str, str], timeout: float) -> None:
        self.project, self.env, self.timeout = project, env, timeout
        self.server: RawServer | None = None
        self.uri = (project / "a.py").as_uri()

    def start(self) -> RawServer:
        if self.server is not None:
            self.server.close(5)
        self.server = RawServer(cwd=self.project, env=self.env)
        self.server.initialize(self.project, {"completion": {"maxTokens": 4}})
        self.server.notify("textDocument/didOpen", {"textDocument": {
            "uri": self.uri, "languageId": "python", "version": 1, "text": SOURCE}})
        return self.server

    def judge(self, row: Row, send: Callable[[RawServer], list[dict] | None]) -> None:
        """Send one input with `send` (it returns the replies it waited for, None when one of
        them never came), then classify what happened."""
        srv = self.server or self.start()
        log_before = len(srv.stderr())
        row.tried += 1
        try:
            replies = send(srv)
            alive = replies is not None and srv.answers(self.timeout)
        except (BrokenPipeError, OSError):
            replies, alive = None, False
        if srv.proc.poll() is not None:
            row.crashes += 1
            self.start()
            return
        if not alive:
            row.hangs += 1
            self.start()
            return
        replies += srv.drain()
        internal = any("error" in r and r["error"].get("code") not in CLIENT_ERROR_CODES for r in replies)
        if internal or "Traceback" in srv.stderr()[log_before:]:
            row.wrong += 1


def stream_row(session: Session, name: str, make: Callable[[random.Random], bytes], count: int,
               rng: random.Random) -> Row:
    row = Row(name)
    for _ in range(count):
        data = make(rng)

        def send(srv: RawServer, data: bytes = data) -> list[dict]:
            srv.send_bytes(data)
            return []

        session.judge(row, send)
    return row


def params_row(session: Session, count: int, rng: random.Random, notifications: bool) -> Row:
    row = Row("params: notifications" if notifications else "params: requests")
    for _ in range(count):
        uri = rng.choice([session.uri, (session.project / "missing.py").as_uri(), "untitled:Untitled-1"])
        templates = notification_templates(uri) if notifications else request_templates(uri)
        method = rng.choice(sorted(templates))
        params = mutate(rng, templates[method] or {})

        def send(srv: RawServer, method: str = method, params=params) -> list[dict] | None:
            if notifications:
                srv.notify(method, params)
                return []
            msg_id = srv.new_id()
            srv.send_bytes(frame({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}))
            reply = srv.reply(msg_id, session.timeout)
            if reply is None:  # a long poll or a slow model: cancel it, then it must answer
                srv.notify("$/cancelRequest", {"id": msg_id})
                reply = srv.reply(msg_id, session.timeout)
            return None if reply is None else [reply]

        session.judge(row, send)
    return row


def lifecycle_row(project: Path, env: dict[str, str], timeout: float) -> Row:
    """Each rule of the LSP lifecycle on a fresh server: right answer, or wrong."""
    row = Row("lifecycle")
    timeout = max(timeout, 120.0)  # the first request also waits for the process to start

    def check(rule: Callable[[RawServer], bool]) -> None:
        row.tried += 1
        srv = RawServer(cwd=project, env=env)
        try:
            ok = rule(srv)
        except subprocess.TimeoutExpired:  # the process outlived `exit`
            row.hangs += 1
            srv.close(5)
            return
        except (BrokenPipeError, OSError, AssertionError, KeyError, TypeError):
            ok = False
        if srv.proc.poll() is not None and srv.proc.returncode not in (0, 1):
            row.crashes += 1
        elif not ok:
            row.wrong += 1
        srv.close(5)

    def code(reply: dict | None) -> int | None:
        return reply["error"]["code"] if reply and "error" in reply else None

    def init(srv: RawServer) -> None:
        srv.initialize(project)

    check(lambda s: code(s.request("loopls/status", None, timeout)) == -32002)
    check(lambda s: (init(s), code(s.request("initialize", {"processId": None, "rootUri": "file:///etc",
                                                             "capabilities": {}}, timeout)))[1] == -32600)
    check(lambda s: (init(s), s.request("shutdown", None, timeout),
                     code(s.request("loopls/status", None, timeout)))[2] == -32600)
    check(lambda s: (init(s), s.notify("exit"), s.proc.wait(timeout))[2] == 1)
    check(lambda s: (init(s), s.request("shutdown", None, timeout), s.notify("exit"), s.proc.wait(timeout))[3] == 0)
    check(lambda s: (init(s), "result" in (s.request("loopls/status", None, timeout) or {}))[1])
    return row


def cli_row(count: int, rng: random.Random, env: dict[str, str], timeout: float) -> Row:
    row = Row("command line")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "calc.py").write_text(SOURCE, encoding="utf-8")
        (root / "blob.py").write_bytes(b"\x00\x01binary")
        (root / "latin.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
        os.mkfifo(root / "pipe.py")
        files = {"source": root / "calc.py", "binary": root / "blob.py", "latin": root / "latin.py",
                 "fifo": root / "pipe.py", "missing": root / "missing.py", "folder": root}
        for _ in range(count):
            argv = hostile_argv(rng, files)
            row.tried += 1
            try:
                out = subprocess.run([*SERVER[:3], *argv], capture_output=True, text=True, timeout=timeout * 8,
                                     env=env, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                row.hangs += 1
                continue
            if out.returncode not in (0, 1, 2) or "Traceback" in out.stderr:
                row.crashes += 1
            elif out.returncode == 2 and (len(out.stderr.strip().splitlines()) != 1 or "internal error" in out.stderr):
                row.wrong += 1
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every category's count")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds a request may take to be answered")
    parser.add_argument("--pythonpath", type=Path, help="a folder put first on the processes' PYTHONPATH")
    parser.add_argument("--only", default="", help="run only the categories whose name contains this")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(args.pythonpath.resolve()), env.get("PYTHONPATH", "")])
    scaled = lambda n: max(1, round(n * args.scale))  # noqa: E731
    rng = random.Random(args.seed)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "a.py").write_text(SOURCE, encoding="utf-8")
        session = Session(project, env, args.timeout)
        plan: list[tuple[str, Callable[[], Row]]] = [
            *((f"framing: {name}", lambda name=name, make=make: stream_row(session, f"framing: {name}", make,
                                                                           scaled(100), rng))
              for name, make in FRAMING_CATEGORIES.items()),
            ("framing: mixed streams", lambda: stream_row(session, "framing: mixed streams", hostile_stream,
                                                          scaled(100), rng)),
            ("params: requests", lambda: params_row(session, scaled(200), rng, notifications=False)),
            ("params: notifications", lambda: params_row(session, scaled(100), rng, notifications=True)),
            ("lifecycle", lambda: lifecycle_row(project, env, args.timeout)),
            ("command line", lambda: cli_row(scaled(40), rng, env, args.timeout)),
        ]
        for name, run in plan:
            if args.only not in name:
                continue
            started = time.perf_counter()
            row = run()
            row.seconds = time.perf_counter() - started
            rows.append(row)
            print(f"  {row.category}: {row.tried} tried, {row.crashes} crashes, {row.hangs} hangs, "
                  f"{row.wrong} wrong ({row.seconds:.0f} s)", file=sys.stderr, flush=True)
        if session.server is not None:
            session.server.close(5)
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"seed {args.seed}, scale {args.scale}, timeout {args.timeout} s"
          + (f", PYTHONPATH {args.pythonpath}" if args.pythonpath else ""))
    print(f"| {'category':<24} | {'tried':>5} | {'crashes':>7} | {'hangs':>5} | {'wrong':>5} | {'seconds':>7} |")
    print(f"|{'-' * 26}|{'-' * 7}|{'-' * 9}|{'-' * 7}|{'-' * 7}|{'-' * 9}|")
    for r in rows + [Row("total", *(sum(getattr(r, f) for r in rows) for f in ("tried", "crashes", "hangs", "wrong")),
                         sum(r.seconds for r in rows))]:
        print(f"| {r.category:<24} | {r.tried:>5} | {r.crashes:>7} | {r.hangs:>5} | {r.wrong:>5} | {r.seconds:>7.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
