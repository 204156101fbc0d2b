"""The virtual clock the in-process OCPP tests run on."""

from __future__ import annotations

import asyncio
import time

from tests.virtual_clock import run


def test_a_long_sleep_takes_no_real_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start

    real = time.monotonic()
    assert run(main()) == 3600
    assert time.monotonic() - real < 1.0


def test_timers_fire_in_order_at_their_instants() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        fired: list[tuple[str, float]] = []

        async def at(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            fired.append((name, loop.time()))

        await asyncio.gather(at("b", 20), at("a", 5), at("c", 300))
        return fired

    assert run(main()) == [("a", 5), ("b", 20), ("c", 300)]


def test_work_on_another_thread_lands_before_a_timeout() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()

        def slow() -> str:
            time.sleep(0.05)  # real time: a database thread, say
            return "done"

        return await asyncio.wait_for(loop.run_in_executor(None, slow), timeout=30)

    assert run(main()) == "done"
