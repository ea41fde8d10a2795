"""The first code a worker process runs (worker_group.py spawns it with this function as its
target): the environment its spec asks for is set before torch loads, because libraries read
it once, as they load (GNU OpenMP its wait policy and spin count), and only then is the spec
unpickled (which loads torch) and the worker started. The spawning process's own environment
is never changed. Nothing here imports torch.

A variable the spawning process's environment already sets is left as it is (a user's
OMP_WAIT_POLICY wins). When torch was loaded before this function ran (the spawning
program's main module imports it, and a spawned process imports that module first), the
environment comes too late for OpenMP: the worker says so on stderr and in its ready info.
"""

from __future__ import annotations

import os
import pickle
import sys
from multiprocessing.connection import Connection


def start_worker(env: dict[str, str], rank: int, spec: bytes, port: int, peers: list[Connection],
                 to_main: Connection) -> None:
    late = bool(env) and "torch" in sys.modules
    for key, value in env.items():
        os.environ.setdefault(key, value)
    if late:
        print(f"loopls engine worker: torch was loaded before {', '.join(sorted(env))} could be set "
              "(the program's main module imports it); OpenMP keeps its default settings", file=sys.stderr)
    from .workers import worker_main

    worker_main(rank, pickle.loads(spec), port, peers, to_main, env_applied=not late)
