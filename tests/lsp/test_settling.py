"""When deferred symbol updates run: after a pause in edits, and at least every `every_s`
while edits go on."""

from __future__ import annotations

import asyncio

from loopls.lsp.settling import Settler


async def test_a_burst_settles_once_after_the_pause():
    settled: list[str] = []
    settler = Settler(settled.append, pause_s=0.05, every_s=5.0)
    for _ in range(20):
        settler.edited("root")
        await asyncio.sleep(0.005)
    assert settled == [] and len(settler) == 1
    await asyncio.sleep(0.15)
    assert settled == ["root"] and len(settler) == 0


async def test_continuous_edits_still_settle_every_every_s():
    settled: list[str] = []
    settler = Settler(settled.append, pause_s=0.2, every_s=0.1)
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.5
    while loop.time() < end:  # never a pause of 0.2 s
        settler.edited("root")
        await asyncio.sleep(0.01)
    assert len(settled) >= 3  # about every 0.1 s
    settler.cancel()
    assert len(settler) == 0


async def test_folders_settle_apart():
    settled: list[str] = []
    settler = Settler(settled.append, pause_s=0.03)
    settler.edited("a")
    settler.edited("b")
    await asyncio.sleep(0.1)
    assert sorted(settled) == ["a", "b"]
