"""``CsmsThread``: a ``DevCsms`` on its own event loop in a daemon thread, with blocking methods
(what tests and scripts use)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from hil.csms.server import DevCsms, Reply
from hil.csms.timeline import Entry

_T = TypeVar("_T")


class CsmsThread:
    """A ``DevCsms`` on its own event loop in a daemon thread, with blocking methods.

    ``with CsmsThread(**DevCsms kwargs) as csms:`` starts it and stops it on exit.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.csms = DevCsms(**kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CsmsThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the loop thread and the CSMS."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dev-csms", daemon=True)
        self._thread.start()
        try:
            self._run(self.csms.start())
        except BaseException:
            self._stop_loop()
            raise

    def stop(self) -> None:
        """Stop the CSMS and the loop thread."""
        if self._loop is None or self._thread is None:
            return
        try:
            self._run(self.csms.stop(), timeout=15)
        finally:
            self._stop_loop()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port. What the CSMS
        recorded (timeline, transactions) is kept, as a CSMS's database would be."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def _stop_loop(self) -> None:
        assert self._loop is not None and self._thread is not None
        with contextlib.suppress(Exception):
            self._run(self._loop.shutdown_default_executor(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self._loop = self._thread = None

    def _run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        assert self._loop is not None, "CsmsThread is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _sync(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the loop thread (so it sees a consistent state)."""

        async def wrapped() -> _T:
            return fn()

        return self._run(wrapped())

    @property
    def url(self) -> str:
        """The base URL; a station appends ``/<station id>``."""
        return self.csms.url

    @property
    def tls_url(self) -> str:
        """The wss:// base URL (``ValueError`` without an ``ssl_context``)."""
        return self.csms.tls_url

    @property
    def port(self) -> int:
        """The port listened on."""
        return self.csms.port

    @property
    def timeline(self) -> list[Entry]:
        """A snapshot of the timeline."""
        return self._sync(lambda: list(self.csms.timeline))

    @property
    def transactions(self) -> dict[int, dict[str, Any]]:
        """A snapshot (deep copy) of the OCPP 1.6 transactions."""
        return self._sync(lambda: copy.deepcopy(self.csms.transactions))

    @property
    def transactions201(self) -> dict[str, dict[str, Any]]:
        """A snapshot (deep copy) of the OCPP 2.0.1 transactions."""
        return self._sync(lambda: copy.deepcopy(self.csms.transactions201))

    def connected(self) -> list[str]:
        """Ids of the stations connected now."""
        return self._sync(lambda: list(self.csms.stations))

    def wait_station(self, station_id: str, timeout: float = 10) -> None:
        """Block until the station is connected."""
        self._run(self.csms.wait_station(station_id, timeout))

    def call(
        self,
        station_id: str,
        action: str,
        payload: dict[str, Any] | None = None,
        timeout: float = 10,
        validate: bool = True,
    ) -> dict[str, Any]:
        """Send a CALL to a connected station and return the result payload."""

        async def do() -> dict[str, Any]:
            return await self.csms.station(station_id).call(action, payload, timeout, validate)

        return self._run(do())

    def send_raw(self, station_id: str, text: str) -> None:
        """Send a raw text frame to a connected station."""

        async def do() -> None:
            await self.csms.station(station_id).send_raw(text)

        self._run(do())

    def wait_for(
        self,
        action: str,
        station: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10,
        after: int = 0,
    ) -> Entry:
        """Block until a matching CALL from a station has been handled; see ``DevCsms.wait_for``."""
        return self._run(self.csms.wait_for(action, station, where, timeout, after))

    def calls(self, action: str, station: str | None = None) -> list[dict[str, Any]]:
        """Payloads of the CALLs of this action received so far."""
        return self._sync(lambda: self.csms.calls(action, station))

    def disconnect(self, station_id: str, timeout: float = 10) -> None:
        """Close the station's connection."""
        self._run(self.csms.disconnect(station_id, timeout))

    def set_boot_status(self, status: str) -> None:
        """Change the BootNotification status given from now on."""
        self._sync(lambda: setattr(self.csms, "boot_status", status))

    def set_reply(self, action: str, reply: Reply | None) -> None:
        """Override (or, with None, restore) the reply to an action."""
        self._sync(lambda: _set(self.csms.replies, action, reply))

    def set_error(self, action: str, error: tuple[str, str] | None) -> None:
        """Answer an action with a CALLERROR ``(code, description)``, or stop doing so (None)."""
        self._sync(lambda: _set(self.csms.errors, action, error))

    def set_passwords(self, passwords: dict[str, str] | None) -> None:
        """Replace the Basic-auth passwords (station id -> password); None = no Basic auth."""
        swapped = None if passwords is None else dict(passwords)
        self._sync(lambda: setattr(self.csms, "passwords", swapped))


def _set(mapping: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value
