"""The network of the in-process bench (``tests.inproc``): an in-memory websocket between
the station's ``Link`` and the development CSMS, and the CSMS on the virtual clock.

``Network.connect`` stands in for ``websockets.connect``: it checks Basic auth and the
subprotocol as the CSMS's server would, then hands one end of a pipe to the station and
the other to ``DevCsms._serve``. Frames are the exact text each side sends.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake, InvalidStatus
from websockets.headers import parse_authorization_basic
from websockets.http11 import Response

from hil.csms import DevCsms

SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}


# -- the websocket ------------------------------------------------------------------------


class _Wire:
    """Both directions of one connection, and how it closed."""

    def __init__(self) -> None:
        self.to_station: asyncio.Queue[str | None] = asyncio.Queue()
        self.to_csms: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed, self.close_code, self.close_reason = True, code, reason
            self.to_station.put_nowait(None)
            self.to_csms.put_nowait(None)

    def _gone(self) -> Exception:
        return (
            ConnectionClosedOK(None, None)
            if self.close_code in (1000, 1001)
            else ConnectionClosedError(None, None)
        )


class StationEnd:
    """What the station's ``Link`` holds instead of a websockets ``ClientConnection``."""

    def __init__(self, wire: _Wire, subprotocol: str) -> None:
        self.wire, self.subprotocol = wire, subprotocol

    @property
    def close_code(self) -> int | None:
        return self.wire.close_code

    @property
    def close_reason(self) -> str:
        return self.wire.close_reason

    async def send(self, text: str) -> None:
        if self.wire.closed:
            raise self.wire._gone()
        self.wire.to_csms.put_nowait(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.wire.close(code, reason)

    def __aiter__(self) -> StationEnd:
        return self

    async def __anext__(self) -> str:
        frame = await self.wire.to_station.get()
        if frame is None:
            if self.wire.close_code in (1000, 1001):
                raise StopAsyncIteration
            raise ConnectionClosedError(None, None)
        return frame


class CsmsEnd:
    """What ``DevCsms._serve`` gets instead of a websockets ``ServerConnection``."""

    remote_address = ("127.0.0.1", 0)

    def __init__(self, wire: _Wire, path: str, headers: Headers, subprotocol: str) -> None:
        self.wire, self.subprotocol = wire, subprotocol
        self.request = SimpleNamespace(path=path, headers=headers)

    @property
    def close_code(self) -> int | None:
        return self.wire.close_code

    @property
    def close_reason(self) -> str:
        return self.wire.close_reason

    async def recv(self) -> str:
        frame = await self.wire.to_csms.get()
        if frame is None:
            raise self.wire._gone()
        return frame

    async def send(self, text: str) -> None:
        if self.wire.closed:
            raise self.wire._gone()
        self.wire.to_station.put_nowait(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.wire.close(code, reason)


class VirtualCsms(DevCsms):
    """The development CSMS telling the time of the virtual clock."""

    epoch: datetime = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> str:
        at = self.epoch + timedelta(seconds=asyncio.get_running_loop().time() + self.clock_offset_s)
        return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    # The blocking helpers of ``CsmsThread``, for tests moved from the subprocess bench.
    def set_reply(self, action: str, reply: Any) -> None:
        if reply is None:
            self.replies.pop(action, None)
        else:
            self.replies[action] = reply

    def set_error(self, action: str, error: tuple[str, str] | None) -> None:
        if error is None:
            self.errors.pop(action, None)
        else:
            self.errors[action] = error

    def set_boot_status(self, status: str) -> None:
        self.boot_status = status

    def set_passwords(self, passwords: dict[str, str] | None) -> None:
        self.passwords = None if passwords is None else dict(passwords)

    def connected(self) -> list[str]:
        return list(self.stations)

    def _record(self, *args: Any, **kwargs: Any) -> int:
        index: int = super()._record(*args, **kwargs)
        self.timeline[index] = dataclasses.replace(self.timeline[index], t=asyncio.get_running_loop().time())
        return index


def virtual_now() -> datetime:
    """The station's (and the CSMS's) time: the bench's epoch plus the virtual clock."""
    return VirtualCsms.epoch + timedelta(seconds=asyncio.get_running_loop().time())


class Network:
    """Stands in for ``websockets.connect``: joins the station to the CSMS while it is up."""

    def __init__(self, csms: DevCsms) -> None:
        self.csms = csms
        self.up = True
        self.wires: list[_Wire] = []
        self._serving: set[asyncio.Task[None]] = set()

    async def connect(self, uri: str, **options: Any) -> StationEnd:
        if not self.up:
            raise ConnectionRefusedError(111, "Connection refused")
        if options.get("ssl") is not None:
            raise OSError("TLS is not simulated in-process; test it end to end")
        path = "/" + uri.split("://", 1)[1].split("/", 1)[1]
        station_id = path.rstrip("/").rsplit("/", 1)[-1]
        headers = Headers(options.get("additional_headers") or {})
        csms = self.csms
        if csms.passwords is not None:
            try:
                user, password = parse_authorization_basic(headers["Authorization"])
            except Exception:
                user, password = "", ""
            if user != station_id or csms.passwords.get(station_id) != password:
                csms._record(
                    station_id, "in", "refused", "", {"status": 401, "reason": "wrong Basic credentials"}
                )
                raise InvalidStatus(Response(401, "Unauthorized", Headers(), b""))
        offered = list(options.get("subprotocols") or [])
        chosen = next((SUBPROTOCOLS[v] for v in csms.versions if SUBPROTOCOLS[v] in offered), None)
        if chosen is None:
            csms._record(
                station_id, "in", "refused", "", {"status": 400, "reason": f"no subprotocol in {offered}"}
            )
            raise InvalidHandshake(f"the CSMS accepts none of {offered}")
        wire = _Wire()
        self.wires.append(wire)
        task = asyncio.ensure_future(csms._serve(CsmsEnd(wire, path, headers, chosen)))  # type: ignore[arg-type]
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)
        await asyncio.sleep(0)  # the CSMS records the connection first, as on a real socket
        return StationEnd(wire, chosen)

    def drop(self) -> None:
        """The network fails: every open connection breaks without a close handshake."""
        for wire in self.wires:
            wire.close(1006, "")
