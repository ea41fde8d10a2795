"""Hostile inputs for the language server and the CLI, by category, drawn from a
`random.Random`: the fuzz tests get one from hypothesis (`st.randoms()`, so failures shrink),
`bench/fuzz_report.py` a seeded one. Every generator returns what to send plus nothing else;
the checks live with the callers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from raw_lsp import frame

STATUS = {"jsonrpc": "2.0", "id": 7, "method": "loopls/status", "params": None}

# -- framing and JSON ---------------------------------------------------------------------------


def _body(rng: random.Random) -> bytes:
    return json.dumps(dict(STATUS, id=rng.choice([7, "s-1", 2**31, 0]))).encode()


def bad_header(rng: random.Random) -> bytes:
    """A frame whose header is malformed: case, line ends, missing, wrong or huge lengths."""
    body = _body(rng)
    n = len(body)
    name = rng.choice([b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"Content-length",
                       b"Content-Lenght", b"Content Length", b""])
    value = rng.choice([b"%d" % n, b" %d " % n, b"-%d" % n, b"%d.0" % n, b"0x%x" % n, b"abc", b"",
                        b"99999999999", b"9" * 30, b"%d" % (n * 2), b"%d" % max(n // 2, 1), b"0"])
    eol = rng.choice([b"\r\n", b"\n", b"\r", b"\n\r"])
    extra = rng.choice([b"", b"Content-Type: application/vscode-jsonrpc; charset=utf-8" + eol,
                        b"X-Junk: " + bytes(rng.randrange(32, 127) for _ in range(8)) + eol,
                        b"Content-Length: 3" + eol, b"no colon here" + eol])
    header = name + b":" + value + eol if name else b""
    parts = [extra + header, header + extra]
    return rng.choice(parts) + eol + body


def bad_body(rng: random.Random) -> bytes:
    """A well-framed header over a body that is shorter, longer, cut or not JSON at all."""
    body = _body(rng)
    choice = rng.randrange(7)
    if choice == 0:  # shorter than announced
        return b"Content-Length: %d\r\n\r\n" % (len(body) + rng.randrange(1, 500)) + body
    if choice == 1:  # longer than announced
        return b"Content-Length: %d\r\n\r\n" % rng.randrange(0, len(body)) + body
    if choice == 2:  # cut in the middle, nothing more
        cut = rng.randrange(len(body))
        return b"Content-Length: %d\r\n\r\n" % len(body) + body[:cut]
    if choice == 3:  # random bytes
        junk = rng.randbytes(rng.randrange(1, 300))
        return b"Content-Length: %d\r\n\r\n" % len(junk) + junk
    if choice == 4:  # invalid UTF-8 inside a string
        bad = body.replace(b"loopls/status", b"loopls/\xff\xfestatus")
        return b"Content-Length: %d\r\n\r\n" % len(bad) + bad
    if choice == 5:  # no header at all
        return body
    return rng.randbytes(rng.randrange(1, 200))  # noise


def bad_json(rng: random.Random) -> bytes:
    """Framed correctly; the JSON is invalid, or valid but no JSON-RPC message."""
    deep = rng.choice([50, 101, 1000, 200_000])
    bodies = [
        b"{", b"}", b"", b"null", b"42", b'"text"', b"[]", b"{}", b"{'single': 'quotes'}",
        b'{"jsonrpc": "2.0", "id": 1, "method": "loopls/status", "params": NaN}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "loopls/status", "params": Infinity}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "loopls/status", "params": {"x": 1e999}}',
        b'{"jsonrpc": "2.0", "id": ' + b"9" * 5000 + b', "method": "loopls/status"}',
        json.dumps([STATUS, STATUS]).encode(),  # a batch
        json.dumps({"id": 1, "method": "loopls/status"}).encode(),  # no jsonrpc
        json.dumps(dict(STATUS, jsonrpc="1.0")).encode(),
        json.dumps(dict(STATUS, jsonrpc=2.0)).encode(),
        json.dumps(dict(STATUS, id=None)).encode(),
        json.dumps(dict(STATUS, id=True)).encode(),
        json.dumps(dict(STATUS, id=1.5)).encode(),
        json.dumps(dict(STATUS, id=[1])).encode(),
        json.dumps(dict(STATUS, method=5)).encode(),
        json.dumps(dict(STATUS, method=None)).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1}).encode(),  # neither request nor response
        json.dumps({"jsonrpc": "2.0", "id": 1, "result": None}).encode(),  # a response to nothing
        json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": "x"}}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "no/such/method", "params": {}}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "$/unknown", "params": {}}).encode(),
        json.dumps({"jsonrpc": "2.0", "method": "no/such/notification", "params": {}}).encode(),
        json.dumps(dict(STATUS, params="a string")).encode(),
        b'{"jsonrpc": "2.0", "id": 1, "method": "loopls/status", "params": {"s": "\\ud800"}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "loopls/status", "params": ' + b"[" * deep + b"]" * deep + b"}",
        b"[" * deep + b"]" * deep,
        b"{" * deep,
        b'{"jsonrpc": "2.0", "id": 1, "method": "loopls/status", "jsonrpc": "2.0", "id": 2}',  # duplicate keys
        b"\xef\xbb\xbf" + json.dumps(STATUS).encode(),  # a UTF-8 byte-order mark
        json.dumps(STATUS).encode("utf-16"),
    ]
    body = rng.choice(bodies)
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def oversized(rng: random.Random) -> bytes:
    """An announced length over the limit, with little or nothing behind it."""
    body = _body(rng)
    return b"Content-Length: %d\r\n\r\n" % rng.choice([2**27 + 1, 2**40, 99999999999, 10**19 - 1]) + body[
        : rng.randrange(len(body) + 1)]


FRAMING_CATEGORIES = {"header": bad_header, "body": bad_body, "json": bad_json, "oversized": oversized}


def hostile_stream(rng: random.Random) -> bytes:
    """A few hostile frames from any category, mixed with valid ones and split anywhere."""
    parts = []
    for _ in range(rng.randrange(1, 5)):
        if rng.random() < 0.2:
            parts.append(frame(dict(STATUS, id=rng.randrange(10**6))))
        else:
            parts.append(rng.choice(list(FRAMING_CATEGORIES.values()))(rng))
    return b"".join(parts)


# -- params -------------------------------------------------------------------------------------

def hostile_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of the kind a buggy client sends where something else was expected."""
    scalars = [None, True, False, 0, -1, 1, 2**31, -(2**31) - 1, 2**53 + 1, 10**30, 1.5, -0.5, 1e308,
               "", "7", "x" * rng.choice([1, 100, 10_000]), "\ud800", "\U0001f600", "file:///", "untitled:x",
               "file:///no/such/file.py", "file:///etc/passwd", "http://example.com/a.py", "not a uri", "\0"]
    if depth < 2 and rng.random() < 0.3:
        if rng.random() < 0.5:
            return [hostile_value(rng, depth + 1) for _ in range(rng.randrange(3))]
        return {rng.choice(["line", "character", "uri", "x", ""]): hostile_value(rng, depth + 1)
                for _ in range(rng.randrange(3))}
    return rng.choice(scalars)


def request_templates(uri: str) -> dict[str, Any]:
    """Valid params of every request the server registers (initialize and shutdown aside)."""
    doc = {"uri": uri}
    pos = {"line": 1, "character": 2}
    rng_ = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
    return {
        "textDocument/inlineCompletion": {"textDocument": doc, "position": pos, "context": {"triggerKind": 1}},
        "textDocument/completion": {"textDocument": doc, "position": pos},
        "textDocument/codeAction": {"textDocument": doc, "range": rng_, "context": {"diagnostics": []}},
        "codeAction/resolve": {"title": "t", "kind": "quickfix", "data": {
            "uri": uri, "version": 1, "code": "LS101", "symbol": "f", "message": "m", "start": [0, 0], "end": [1, 0]}},
        "textDocument/diagnostic": {"textDocument": doc},
        "workspace/diagnostic": {"previousResultIds": []},
        "loopls/explainContext": {"textDocument": doc, "position": pos, "budget": 256},
        "loopls/status": None,
        "loopls/contextStatus": None,
        "workspace/executeCommand": {"command": "loopls.none", "arguments": []},
    }


def notification_templates(uri: str) -> dict[str, Any]:
    doc = {"uri": uri, "languageId": "python", "version": 2, "text": "def f(x):\n    return x\n"}
    change = {"range": {"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 5}}, "text": "g"}
    return {
        "textDocument/didOpen": {"textDocument": doc},
        "textDocument/didChange": {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [change]},
        "textDocument/didSave": {"textDocument": {"uri": uri}},
        "textDocument/didClose": {"textDocument": {"uri": uri}},
        "workspace/didChangeConfiguration": {"settings": {"loopls": {"completion": {"maxTokens": 4}}}},
        "workspace/didChangeWatchedFiles": {"changes": [{"uri": uri, "type": 2}]},
        "$/setTrace": {"value": "off"},
        "$/cancelRequest": {"id": 1},
        "window/workDoneProgress/cancel": {"token": "t"},
        "workspace/didChangeWorkspaceFolders": {"event": {"added": [], "removed": []}},
    }


def mutate(rng: random.Random, value: Any) -> Any:
    """`value` with one part replaced by a hostile value, removed, or given an unknown key."""
    if not isinstance(value, (dict, list)) or not value or rng.random() < 0.15:
        return hostile_value(rng)
    if isinstance(value, list):
        i = rng.randrange(len(value))
        return value[:i] + [mutate(rng, value[i])] + value[i + 1:]
    out = dict(value)
    key = rng.choice(sorted(out))
    action = rng.random()
    if action < 0.15:
        del out[key]
    elif action < 0.25:
        out[rng.choice(["extra", "position", "uri", "textDocument"])] = hostile_value(rng)
    else:
        out[key] = mutate(rng, out[key])
    return out


# -- command line -------------------------------------------------------------------------------

def hostile_argv(rng: random.Random, files: dict[str, Path]) -> list[str]:
    """A command line with one or two bad arguments, for each subcommand."""
    good = files["source"]
    any_path = lambda: str(rng.choice(list(files.values())))  # noqa: E731
    location = rng.choice([f"{good}:1:1", f"{good}:0:0", f"{good}:99:1", f"{good}:1:999", f"{good}:1",
                           f"{good}:-1:2", f"{good}:x:y", f"{any_path()}:1:1", ":1:1", "", f"{good}:1e3:1"])
    number = lambda: rng.choice(["0", "-5", "1e9", "99999999999999999999", "abc", "", "3", "1.5"])  # noqa: E731
    commands = [
        ["complete", location, "--max-tokens", number()],
        ["complete", location, "--device", rng.choice(["bogus", "cuda", "cuda:7", "cuda:x", "cpu", "mps", ""])],
        ["complete", location, "--model", rng.choice([any_path(), "no/such-model", "", "tiny", "a/b/c"])],
        ["context", location, "--budget", number()],
        ["context", location, "--root", any_path()],
        ["index", any_path(), "--quiet"],
        ["check", any_path(), "-o", rng.choice([str(files["folder"]), str(files["folder"] / "missing" / "x.sarif"),
                                                 str(files["source"]) + "/x"])],
        ["check", any_path(), "--threshold", rng.choice(["maxCyclomatic=x", "nope=3", "=", "maxCyclomatic"])],
        ["check", any_path(), "--format", rng.choice(["xml", "", "sarif"]), "--disable", rng.choice(["LS999", ""])],
        ["model", "create-tiny", any_path(), "--shards", number()],
        ["model", "create-tiny", str(files["folder"] / "m"), "--arch", rng.choice(["gpt2", "", "qwen2"]),
         "--seed", number()],
        ["lsp", "--tcp", rng.choice(["nope", "127.0.0.1:99999", ":", "host:", "[::1]:x"])],
        ["--log-level", rng.choice(["bogus", "", "12"]), "doctor"],
        [rng.choice(["bogus", "", "--nope", "-x", "complete", "context", "model"])],
        # each with one bad value, so that none of them goes on to serve
        ["serve", *rng.choice([["--port", rng.choice(["-1", "65536", "x"])], ["--device", rng.choice(["", "tpu"])],
                               ["--max-body-bytes", number()], ["--max-concurrent", rng.choice(["0", "-5", "1e9"])],
                               ["--host", "0.0.0.0"], ["--model", str(files["missing"])]])],
        ["doctor", "--url", rng.choice(["", "nope", "http://127.0.0.1:1/v1", "http://[::1"])],
        ["demo", str(rng.choice([files["missing"], files["source"]])), "--model", rng.choice(["", "x/y"])],
    ]
    return rng.choice(commands)
