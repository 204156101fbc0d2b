"""An asyncio event loop on virtual time, for in-process tests of timed behaviour.

The loop's clock starts at 0 and moves only when the loop would otherwise sleep: a
``sleep(300)`` returns at once, with ``loop.time()`` 300 s later. Work on other threads is still
real: while a ``run_in_executor`` job (``asyncio.to_thread`` too) is out, or the test holds
the clock (``hold``), the loop waits in real time rather than jump, so a thread's answer
lands before a timeout the test did not mean to reach. Other threads get a moment of
real time before each jump.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

REAL_GRACE_S = 0.002  # real time given to other threads before virtual time jumps


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualClockLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return super().select(0)
        ready = super().select(REAL_GRACE_S if timeout is None else min(timeout, REAL_GRACE_S))
        assert self.loop is not None
        if ready or timeout is None or self.loop.held:
            # Only another thread or a socket can wake us (``release`` does), in real time.
            return ready or super().select(timeout)
        self.loop.advance(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0
        self._holds = 0

    @property
    def held(self) -> bool:
        return self._holds > 0

    def hold(self) -> None:
        """Stop virtual time from jumping until ``release``: real work is out."""
        self._holds += 1

    def release(self) -> None:
        self._holds -= 1
        self.call_soon_threadsafe(lambda: None)  # wake the selector to jump again

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:  # type: ignore[override]
        future = super().run_in_executor(executor, func, *args)
        self.hold()
        future.add_done_callback(lambda _: self.release())
        return future

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on virtual time."""
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(main)
