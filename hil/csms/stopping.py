"""How ``python -m hil.csms`` ends: the first SIGINT or SIGTERM stops the CSMS, a second one (or
the first one not done within ``EXIT_DEADLINE_S``) ends the process at once.

The handlers are installed before anything else, whatever the process inherited: a process
started in the background by a non-interactive shell (``make test &``, a script's ``cmd &``)
inherits SIGINT *ignored*, and ``asyncio.run`` takes SIGINT over only when it finds Python's
default handler, so such a CSMS ignored every SIGINT and ran on forever.

Standard library only: ``__main__`` imports this before the CSMS's own imports, which take a
while on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
CLOSE_TIMEOUT_S = 2.0  # for a station to answer the close, before its connection is cut
STOP_TIMEOUT_S = 3.0  # for the CSMS to close its connections and stop listening
EXIT_DEADLINE_S = 5.0  # from the first signal to the end of the process, whatever still runs

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class Shutdown:
    """The signal handlers of the command line, from ``install`` to ``restore``.

    A signal only records itself (``signalled``) and, once the event loop is ``attach``-ed, wakes
    ``wait``: nothing is raised wherever the main thread happens to be (a KeyboardInterrupt
    raised inside an import or the event loop can leave things half done, and one raised in
    string-exec'd code, as dataclasses generate, makes ``python -m`` exit by SIGINT even when
    caught). Start-up looks at ``signalled`` at its steps; a watchdog thread ends the process
    if it still runs ``EXIT_DEADLINE_S`` after the first signal.
    """

    def __init__(self) -> None:
        self.signalled: int | None = None  # the first signal received
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._previous: dict[int, _Handler] = {}
        self._woken = threading.Event()  # a first signal, or restore
        self._restored = threading.Event()

    def install(self) -> None:
        """Take SIGINT and SIGTERM over and start the watchdog (main thread only: elsewhere, e.g.
        ``main`` called from a test's thread, nothing is installed)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        threading.Thread(target=self._watch, name="csms-exit-deadline", daemon=True).start()

    def restore(self) -> None:
        """Put the previous handlers back and end the watchdog."""
        # Handlers first: ours then never runs while this thread holds an Event's lock.
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        self._restored.set()
        self._woken.set()

    def attach(self) -> None:
        """From now on (in the running event loop) a signal makes ``wait`` return."""
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self.signalled is not None:
            self._stop.set()

    async def wait(self) -> None:
        """Return once a signal asks the CSMS to stop."""
        assert self._stop is not None, "attach first"
        await self._stop.wait()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signalled is not None:
            _exit_now(signum, f"{signal.Signals(signum).name} again")
        self.signalled = signum
        self._woken.set()
        if self._loop is not None and self._stop is not None:
            # As asyncio's own SIGINT handler does: the loop may be anywhere, so hand it over.
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to stop
                self._loop.call_soon_threadsafe(self._stop.set)

    def _watch(self) -> None:
        self._woken.wait()
        if self._restored.wait(EXIT_DEADLINE_S):
            return
        signum = self.signalled or signal.SIGINT
        _exit_now(signum, f"not stopped {EXIT_DEADLINE_S:g} s after {signal.Signals(signum).name}")


def _exit_now(signum: int, why: str) -> None:
    """End the process now, with the shell's status for "ended by this signal" (128 + number)."""
    with contextlib.suppress(OSError):  # no print: the main thread may hold stderr's lock
        os.write(2, f"dev CSMS: {why}: exiting now\n".encode())
    os._exit(128 + signum)


@contextlib.contextmanager
def handled() -> Iterator[Shutdown]:
    """SIGINT and SIGTERM handled by one ``Shutdown`` while inside; nested uses share it."""
    global _current
    if _current is not None:
        yield _current
        return
    shutdown = _current = Shutdown()
    shutdown.install()
    try:
        yield shutdown
    finally:
        _current = None
        shutdown.restore()


_current: Shutdown | None = None  # signal handlers are one per process
