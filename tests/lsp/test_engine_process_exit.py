"""A process whose model runs in an engine process of its own (the language server on a CPU)
may end at any moment of that engine's start: `shutdown` then `exit` or the client gone
(the event loop ends, then the process ends with `os._exit`, which skips multiprocessing's
ending of child processes), or killed by a signal. In every case no engine process is left
behind and nothing lands on stderr (the editor's log) but log lines: no traceback from a
child that read EOF while it was being spawned, or that sent "ready" to a parent gone.

A real `ModelHost` in a real process, as the server runs it (the load on its prepare thread),
on the tiny model, whatever the server's default engine is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from loopls.engine.model.tiny import create_tiny
from marked_processes import gone_within

# argv: model folder, moment ("at once" | "spawned" | "loading" | "ready"), how it ends
# ("shutdown": the host is shut down inside the loop; "loop end": the loop ends first, which
# cancels a load in progress; "wait": it waits to be killed)
HOST = r'''
import asyncio, os, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from loopls.engine.backends import BackendConfig
from loopls.lsp.model_host import ModelHost

def engine_children():
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and b"spawn_main" in command:
            found.append(entry.name)
    return found

model, moment, end = sys.argv[1:4]
host = ModelHost(ThreadPoolExecutor(1, thread_name_prefix="loopls-prepare"))

async def main():
    host.configure(BackendConfig(model=model, device="cpu", context_tokens=256, engine_process=True))
    seen = []
    if moment != "at once":
        deadline = time.monotonic() + 120
        while not (seen := engine_children()):
            assert time.monotonic() < deadline, "no engine process was started"
            await asyncio.sleep(0.001)
        if moment == "loading":
            await asyncio.sleep(0.5)
        elif moment == "ready":
            assert await host.ready() is not None
    print(" ".join(seen), flush=True)
    if end == "shutdown":
        host.shutdown()
    elif end == "wait":
        await asyncio.sleep(600)

asyncio.run(main())
host.shutdown()  # the server's end_process
os._exit(0)
'''


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(create_tiny(tmp_path_factory.mktemp("engine-exit") / "tiny", "llama", seed=3))


def _start(model: str, moment: str, end: str, stderr) -> tuple[subprocess.Popen, str]:
    mark = f"LOOPLS_TEST_MARK=exit-{uuid.uuid4().hex}"
    env = dict(os.environ, LOOPLS_TEST_MARK=mark.split("=", 1)[1])
    proc = subprocess.Popen([sys.executable, "-c", HOST, model, moment, end], stdout=subprocess.PIPE,
                            stderr=stderr, env=env, text=True)
    return proc, mark


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("moment", "end"), [
    ("at once", "shutdown"),  # before the engine process is spawned
    ("spawned", "shutdown"),  # as soon as it exists: still reading its spawn data, or importing
    ("spawned", "loop end"),
    ("loading", "shutdown"),
    ("loading", "loop end"),
    ("ready", "loop end"),
])
def test_ending_while_the_engine_process_starts_leaves_no_process_and_no_traceback(
        model: str, tmp_path: Path, moment: str, end: str) -> None:
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:
        proc, mark = _start(model, moment, end, stderr)
        out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log.read_text()
    assert bool(out.split()) == (moment != "at once")  # the engine processes it saw
    # killed before the host exited: only its resource tracker may still be ending
    left_over = gone_within(mark, 3.0)
    assert gone_within(mark, 120.0), "a process the host started never ended"
    text = log.read_text(errors="replace")  # also what an engine process left behind wrote
    assert "Traceback" not in text and "Error" not in text, text
    assert left_over, f"an engine process outlived the host: {out.split()}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("moment", ["loading", "ready"])
def test_an_engine_process_whose_host_is_killed_ends_quietly(model: str, tmp_path: Path, moment: str) -> None:
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:
        proc, mark = _start(model, moment, "wait", stderr)
        (pid,) = map(int, proc.stdout.readline().split())
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    assert gone_within(mark, 120.0), f"engine process {pid} never ended"
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "Error" not in text, text
