"""The development CSMS's websocket server: it takes station connections (through the TLS front
when it has a certificate), keeps the timeline and the transactions, and waits for messages."""

from __future__ import annotations

import asyncio
import hmac
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import IO, Any, cast
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import InvalidHeader, NegotiationError
from websockets.headers import build_www_authenticate_basic, parse_authorization_basic
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from hil.csms.lines import describe
from hil.csms.session import StationSession
from hil.csms.timeline import Direction, Entry, Kind
from hil.csms.tls import TlsFront
from hil.csms.versions import HANDLERS, SUBPROTOCOLS

Reply = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


def _now(offset_s: float = 0.0) -> str:
    """The current UTC time (plus ``offset_s``) in RFC 3339 with a ``Z``."""
    return (
        (datetime.now(UTC) + timedelta(seconds=offset_s))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _station_id(path: str) -> str:
    """The station id: the last segment of the request path."""
    return unquote(path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])


class DevCsms:
    """The development CSMS (asyncio API).

    ``versions`` are the OCPP versions accepted ("1.6", "2.0.1"), in the order of
    preference: a station gets the first one it offers.

    Settings may be changed while it runs: ``boot_status``, ``heartbeat_interval``,
    ``auth`` (idTag or idToken -> status), ``default_auth``, ``replies[action]`` (a
    payload, or a callable taking the request payload) and ``errors[action] = (code,
    description)``, which answers that action with a CALLERROR. A configured error or
    reply replaces the default handling, so e.g. a StartTransaction or TransactionEvent
    answered that way is not recorded in ``transactions`` / ``transactions201``.

    ``transactions`` holds the OCPP 1.6 transactions by the id the CSMS gave them:
    ``{"station", "start", "stop", "stop_count"}``. ``transactions201`` holds the OCPP
    2.0.1 ones by the station's transactionId: ``{"station", "events", "started",
    "ended", "ended_count", "duplicates"}``; ``events`` has each seqNo once (a
    redelivered event is answered again and counted in ``duplicates``), ``started`` and
    ``ended`` are the first Started and Ended events (or None) and ``ended_count``
    counts every Ended event received, redeliveries included.

    With ``ssl_context`` (a server-side context; requiring client certificates is its
    business) stations connect with TLS, to ``url`` (wss://); with ``plain_too`` as well
    the same port also takes plain connections, told apart by their first byte: ``url``
    is then the ws:// one and ``tls_url`` the wss:// one. TLS handshakes that fail are
    recorded as "refused" entries ``{"error", "reason", "peer"}`` (no HTTP ``status``),
    and the "connect" entry of a TLS connection has ``"tls": {"version", "client_cert"}``
    (the client certificate's subject, e.g. ``{"commonName": ..., "organizationName": ...}``,
    or None).

    Closing a station's connection (``stop``, ``disconnect``) waits ``close_timeout`` seconds for
    the station to answer the close before cutting the connection.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        versions: Sequence[str] = ("1.6",),
        boot_status: str = "Accepted",
        heartbeat_interval: int = 300,
        auth: dict[str, str] | None = None,
        default_auth: str = "Accepted",
        passwords: dict[str, str] | None = None,
        quiet: bool = False,
        out: IO[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        plain_too: bool = False,
        close_timeout: float = 10.0,
    ) -> None:
        unsupported = [v for v in versions if v not in HANDLERS]
        if unsupported or not versions:
            raise ValueError(f"unsupported OCPP version(s) {unsupported}; supported: {', '.join(HANDLERS)}")
        if plain_too and ssl_context is None:
            raise ValueError("plain_too needs an ssl_context")
        self.host = host
        self.port = port
        self.versions = tuple(versions)
        self.boot_status = boot_status
        self.heartbeat_interval = heartbeat_interval
        self.auth: dict[str, str] = dict(auth or {})
        self.default_auth = default_auth
        self.passwords = passwords
        self.quiet = quiet
        self.out = out
        self.ssl_context = ssl_context
        self.plain_too = plain_too
        self.close_timeout = close_timeout
        self.replies: dict[str, Reply] = {}
        self.errors: dict[str, tuple[str, str]] = {}
        self.timeline: list[Entry] = []
        self.transactions: dict[int, dict[str, Any]] = {}
        self.transactions201: dict[str, dict[str, Any]] = {}
        self.stations: dict[str, StationSession] = {}
        self._tx_keys: dict[tuple[Any, ...], int] = {}
        self._pending: set[int] = set()
        self._changed = asyncio.Event()
        self._server: Server | None = None
        self._front: TlsFront | None = None
        self.clock_offset_s = 0.0  # the time this CSMS tells stations, minus the real time

    def now(self) -> str:
        """The time as this CSMS tells it (currentTime), ``clock_offset_s`` included."""
        return _now(self.clock_offset_s)

    @property
    def url(self) -> str:
        """The base URL; a station appends ``/<station id>``. wss:// with TLS only, else ws://."""
        tls_only = self.ssl_context is not None and not self.plain_too
        return self._base_url("wss" if tls_only else "ws")

    @property
    def tls_url(self) -> str:
        """The wss:// base URL (``ValueError`` without an ``ssl_context``)."""
        if self.ssl_context is None:
            raise ValueError("this CSMS has no TLS (no ssl_context)")
        return self._base_url("wss")

    def _base_url(self, scheme: str) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}/ocpp"

    async def start(self) -> None:
        """Start listening; ``port`` then holds the actual port."""
        # With TLS, the front takes the connections and relays them to a plain server inside.
        inside = self.ssl_context is not None
        self._changed = asyncio.Event()  # a restarted CSMS runs on a new event loop
        self._server = await serve(
            self._serve,
            "127.0.0.1" if inside else self.host,
            0 if inside else self.port,
            subprotocols=[Subprotocol(SUBPROTOCOLS[v]) for v in self.versions],
            select_subprotocol=self._select_subprotocol,
            process_request=self._check_request,
            close_timeout=self.close_timeout,
        )
        port: int = self._server.sockets[0].getsockname()[1]
        if self.ssl_context is not None:
            self._front = TlsFront(self, self.ssl_context, self.plain_too, port)
            try:
                port = await self._front.start(self.host, self.port)
            except BaseException:
                self._front = None
                await self.stop()
                raise
        self.port = port

    async def stop(self) -> None:
        """Close every station connection and stop listening."""
        if self._front is not None:
            self._front.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._front is not None:
            await self._front.wait_closed()
            self._front = None

    async def wait_station(self, station_id: str, timeout: float = 10) -> StationSession:
        """Wait until the station is connected and return its session."""
        await self._wait(lambda: station_id in self.stations, timeout, f"station {station_id} to connect")
        return self.stations[station_id]

    def station(self, station_id: str) -> StationSession:
        """The session of a connected station (``LookupError`` if it is not connected)."""
        try:
            return self.stations[station_id]
        except KeyError:
            raise LookupError(f"station {station_id} is not connected") from None

    async def disconnect(self, station_id: str, timeout: float = 10) -> None:
        """Close the station's connection (no-op if it is not connected)."""
        session = self.stations.get(station_id)
        if session is not None:
            await session.close(timeout)

    async def wait_for(
        self,
        action: str,
        station: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10,
        after: int = 0,
    ) -> Entry:
        """Wait for a CALL from a station, handled and answered, at timeline index ``after`` or later."""
        found: list[Entry] = []
        scanned = after  # entries before this were looked at already
        waiting: list[int] = []  # matching calls not yet answered: look again

        def match() -> bool:
            nonlocal scanned
            end = len(self.timeline)
            for index in [*waiting, *range(scanned, end)]:
                entry = self.timeline[index]
                if (
                    entry.kind == "call"
                    and entry.direction == "in"
                    and entry.action == action
                    and station in (None, entry.station)
                    and (where is None or where(cast(dict[str, Any], entry.payload)))
                ):
                    if index in self._pending:
                        if index not in waiting:
                            waiting.append(index)
                        continue
                    found.append(entry)
                    return True
            scanned = end
            return False

        await self._wait(match, timeout, f"{action} from {station or 'any station'}")
        return found[0]

    def calls(self, action: str, station: str | None = None) -> list[dict[str, Any]]:
        """Payloads of the CALLs of this action received so far (from one station or all)."""
        return [
            cast(dict[str, Any], e.payload)
            for e in self.timeline
            if e.kind == "call"
            and e.direction == "in"
            and e.action == action
            and station in (None, e.station)
        ]

    def auth_status(self, id_tag: str) -> str:
        """The idTagInfo (1.6) or idTokenInfo (2.0.1) status for an idTag or idToken."""
        return self.auth.get(id_tag, self.default_auth)

    async def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                if not condition():
                    raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _record(
        self,
        station: str,
        direction: Direction,
        kind: Kind,
        action: str,
        payload: dict[str, Any] | str,
        unique_id: str = "",
        pending: bool = False,
    ) -> int:
        entry = Entry(time.monotonic(), station, direction, kind, action, payload, unique_id)
        self.timeline.append(entry)
        index = len(self.timeline) - 1
        if pending:
            self._pending.add(index)
        if not self.quiet:
            print(
                f"{datetime.now():%H:%M:%S.%f}"[:-3] + "  " + describe(entry),
                file=self.out or sys.stdout,
                flush=True,
            )
        self._notify()
        return index

    def _handled(self, index: int) -> None:
        self._pending.discard(index)
        self._notify()

    def _open_transaction(self, station: str, key: tuple[Any, ...], payload: dict[str, Any]) -> int:
        """The transaction id for a StartTransaction; the same one again for a redelivery."""
        full_key = (station, *key)
        if full_key in self._tx_keys:
            return self._tx_keys[full_key]
        tx_id = max(self.transactions, default=0) + 1
        self._tx_keys[full_key] = tx_id
        self.transactions[tx_id] = {"station": station, "start": payload, "stop": None, "stop_count": 0}
        return tx_id

    def _transaction_event(self, station: str, payload: dict[str, Any]) -> None:
        """Record an OCPP 2.0.1 TransactionEvent, each (transactionId, seqNo) once."""
        tx = self.transactions201.setdefault(
            payload["transactionInfo"]["transactionId"],
            {
                "station": station,
                "events": [],
                "started": None,
                "ended": None,
                "ended_count": 0,
                "duplicates": 0,
            },
        )
        kind = str(payload["eventType"]).lower()  # started, updated or ended
        if kind == "ended":
            tx["ended_count"] += 1
        if any(event["seqNo"] == payload["seqNo"] for event in tx["events"]):
            tx["duplicates"] += 1
            return
        tx["events"].append(payload)
        if kind in ("started", "ended") and tx[kind] is None:
            tx[kind] = payload

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, why: str) -> Response:
        request = connection.request
        station = _station_id(request.path) if request is not None else ""
        self._record(station, "in", "refused", "", {"status": int(status), "reason": why})
        return connection.respond(status, why + "\n")

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a path without a station id and, with ``passwords``, wrong Basic credentials."""
        station = _station_id(request.path)
        if not station:
            return self._refuse(connection, HTTPStatus.NOT_FOUND, "no station id in the path")
        if self.passwords is None:
            return None
        expected = self.passwords.get(station)
        try:
            user, password = parse_authorization_basic(request.headers["Authorization"])
        except (KeyError, InvalidHeader):
            user, password = "", ""
        if (
            expected is None
            or user != station
            or not hmac.compare_digest(password.encode(), expected.encode())
        ):
            response = self._refuse(connection, HTTPStatus.UNAUTHORIZED, "missing or wrong Basic credentials")
            response.headers["WWW-Authenticate"] = build_www_authenticate_basic("dev CSMS")
            return response
        return None

    def _select_subprotocol(
        self, connection: ServerConnection, subprotocols: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        for version in self.versions:
            if SUBPROTOCOLS[version] in subprotocols:
                return Subprotocol(SUBPROTOCOLS[version])
        wanted = ", ".join(SUBPROTOCOLS[v] for v in self.versions)
        self._refuse(
            connection, HTTPStatus.BAD_REQUEST, f"no {wanted} subprotocol offered ({list(subprotocols)})"
        )
        raise NegotiationError(f"expected subprotocol {wanted}")

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None and ws.subprotocol is not None
        station_id = _station_id(ws.request.path)
        version = next(v for v in self.versions if SUBPROTOCOLS[v] == ws.subprotocol)
        session = StationSession(self, station_id, version, ws)
        self.stations[station_id] = session
        details: dict[str, Any] = {"path": ws.request.path, "subprotocol": ws.subprotocol}
        tls = self._front.tls_of(ws.remote_address[1]) if self._front is not None else None
        if tls is not None:
            details["tls"] = tls
        self._record(station_id, "in", "connect", "", details)
        try:
            await session._run()
        finally:
            if self.stations.get(station_id) is session:
                del self.stations[station_id]
            info = {"code": ws.close_code, "reason": ws.close_reason or ""}
            self._record(station_id, "in", "disconnect", "", info)
