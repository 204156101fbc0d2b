"""A small OCPP central system (CSMS) for development, demos and end-to-end tests.

    python -m hil.csms [--host 127.0.0.1] [--port 9000] [--boot-status Accepted] [--heartbeat 300]
                       [--version 1.6|2.0.1|auto ...]
                       [--tls-cert PEM [--tls-key PEM] [--tls-ca PEM] [--plain-too]]

Stations connect to ``ws://host:port/<anything>/<station id>`` with the ``ocpp1.6`` or
``ocpp2.0.1`` subprotocol (whichever of them the CSMS accepts; 1.6 alone by default),
or to ``wss://`` when it has a TLS certificate (``ssl_context``; with ``plain_too`` the same
port takes both).
The CSMS answers every station-initiated OCPP 1.6 and 2.0.1 message from its settings,
keeps a timeline of every frame in both directions (printed one line each unless
``quiet``) and lets a test send any CALL to a station and wait for messages.

Built on the ``ocpp`` package: its ``ChargePoint`` routes incoming CALLs to the ``@on``
handlers below and every payload, received or sent, is checked against the official
JSON schemas. ``DevCsms`` is the asyncio API; ``CsmsThread`` runs one on its own event
loop in a daemon thread and offers the same operations as blocking calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import hmac
import json
import logging
import re
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import IO, Any, Literal, TypeVar, cast
from urllib.parse import unquote

from ocpp.charge_point import camel_to_snake_case  # type: ignore[import-untyped]
from ocpp.exceptions import OCPPError  # type: ignore[import-untyped]
from ocpp.messages import Call, CallError, CallResult, unpack, validate_payload  # type: ignore[import-untyped]
from ocpp.routing import on  # type: ignore[import-untyped]
from ocpp.v16 import ChargePoint as ChargePoint16  # type: ignore[import-untyped]
from ocpp.v201 import ChargePoint as ChargePoint201  # type: ignore[import-untyped]
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHeader, NegotiationError
from websockets.headers import build_www_authenticate_basic, parse_authorization_basic
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from controller.ocpp import ocppj
from controller.ocpp.ocppj import Codec

__all__ = ["CallErrorReply", "CsmsThread", "DevCsms", "Entry", "StationSession", "main"]

Direction = Literal["in", "out"]
Kind = Literal["call", "result", "error", "raw", "connect", "disconnect", "refused"]
Reply = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")

_LOG = logging.getLogger("hil.csms")
# The ocpp package logs every frame, and every malformed one with a traceback; the
# timeline already shows those, so they stay silent unless the app configures logging.
_OCPP_LOG = _LOG.getChild("ocpp")
_OCPP_LOG.addHandler(logging.NullHandler())

_SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}


def _on(action: str) -> Callable[[_F], _F]:
    """``ocpp.routing.on`` with a type, so handlers stay typed. Payloads are checked by
    ``StationSession`` with the station's compiled validators (``controller.ocpp.ocppj``): the
    package's own jsonschema check, run on a worker thread, was half of this CSMS's
    work per message when the benchmark replayed a queue."""
    return cast(Callable[[_F], _F], on(action, skip_schema_validation=True))


def _now(offset_s: float = 0.0) -> str:
    """The current UTC time (plus ``offset_s``) in RFC 3339 with a ``Z``."""
    return (
        (datetime.now(UTC) + timedelta(seconds=offset_s))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class Entry:
    """One timeline record: a frame, or a station connecting, disconnecting or refused.

    ``direction`` is seen from the CSMS ("in" = from the station). ``payload`` is the
    message payload (camelCase, as on the wire), ``{"code", "description", "details"}``
    for an error, the text for a raw frame, and connection details otherwise.
    """

    t: float
    station: str
    direction: Direction
    kind: Kind
    action: str
    payload: dict[str, Any] | str
    unique_id: str = ""


class CallErrorReply(Exception):
    """The station answered a CALL with a CALLERROR."""

    def __init__(self, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


class _ConfiguredError(OCPPError):  # type: ignore[misc]
    """A CALLERROR requested through ``DevCsms.errors``; ``code`` is set per instance."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description=description, details={})
        self.code = code


class _Wire:
    """The connection handed to the ``ocpp`` ChargePoint: records each frame it sends."""

    def __init__(self, session: StationSession) -> None:
        self._session = session

    async def send(self, message: str) -> None:
        """Record, then send one text frame."""
        self._session._record_out(message)
        await self._session._ws.send(message)


class _Answering:
    """What the handlers of both versions share: answers go through the session's overrides."""

    id: str
    _call_result: Any
    _session: StationSession
    _csms: DevCsms

    def _reply(self, action: str, unique_id: str, default: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
        try:
            reply = self._session._answer(action, unique_id, default)
            error = self._session.schema_error(action, reply, response=True)
            if error is not None:
                raise _ConfiguredError(
                    ocppj.ERROR_NAMES[self._session.version][error.kind], error.description
                )
            return getattr(self._call_result, action)(**camel_to_snake_case(reply))
        except OCPPError:
            raise
        except Exception:
            # The ocpp package turns this into an InternalError CALLERROR; show why.
            _LOG.exception("%s: failed to answer %s", self.id, action)
            raise

    def _boot(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": self._csms.boot_status,
            "currentTime": self._csms.now(),
            "interval": self._csms.heartbeat_interval,
        }


class _Ocpp16(_Answering, ChargePoint16):  # type: ignore[misc]
    """The CSMS side of one OCPP 1.6 connection: a handler for each station-initiated action."""

    def __init__(self, session: StationSession) -> None:
        super().__init__(session.id, _Wire(session), logger=_OCPP_LOG)
        self._session = session
        self._csms = session.csms

    def _id_tag_info(self, id_tag: str) -> dict[str, Any]:
        return {"status": self._csms.auth_status(id_tag)}

    def _start(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = tuple(payload.get(k) for k in ("connectorId", "idTag", "timestamp", "meterStart"))
        tx_id = self._csms._open_transaction(self.id, key, payload)
        return {"transactionId": tx_id, "idTagInfo": self._id_tag_info(payload["idTag"])}

    def _stop(self, payload: dict[str, Any]) -> dict[str, Any]:
        tx = self._csms.transactions.get(payload["transactionId"])
        if tx is not None:
            tx["stop"] = payload
            tx["stop_count"] += 1
        return {"idTagInfo": self._id_tag_info(payload["idTag"])} if "idTag" in payload else {}

    @_on("BootNotification")
    def on_boot_notification(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("BootNotification", call_unique_id, self._boot)

    @_on("Heartbeat")
    def on_heartbeat(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("Heartbeat", call_unique_id, lambda p: {"currentTime": self._csms.now()})

    @_on("Authorize")
    def on_authorize(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply(
            "Authorize", call_unique_id, lambda p: {"idTagInfo": self._id_tag_info(p["idTag"])}
        )

    @_on("StartTransaction")
    def on_start_transaction(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("StartTransaction", call_unique_id, self._start)

    @_on("StopTransaction")
    def on_stop_transaction(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("StopTransaction", call_unique_id, self._stop)


class _Ocpp201(_Answering, ChargePoint201):  # type: ignore[misc]
    """The CSMS side of one OCPP 2.0.1 connection.

    Boot, Heartbeat, Authorize and TransactionEvent have handlers here; every other
    station-initiated action gets its fixed answer from ``_FIXED_201``.
    """

    def __init__(self, session: StationSession) -> None:
        super().__init__(session.id, _Wire(session), logger=_OCPP_LOG)
        self._session = session
        self._csms = session.csms

    def _id_token_info(self, id_token: dict[str, Any]) -> dict[str, Any]:
        return {"status": self._csms.auth_status(str(id_token.get("idToken")))}

    def _transaction_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._csms._transaction_event(self.id, payload)
        token = payload.get("idToken")
        return {"idTokenInfo": self._id_token_info(token)} if isinstance(token, dict) else {}

    @_on("BootNotification")
    def on_boot_notification(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("BootNotification", call_unique_id, self._boot)

    @_on("Heartbeat")
    def on_heartbeat(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("Heartbeat", call_unique_id, lambda p: {"currentTime": self._csms.now()})

    @_on("Authorize")
    def on_authorize(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply(
            "Authorize", call_unique_id, lambda p: {"idTokenInfo": self._id_token_info(p["idToken"])}
        )

    @_on("TransactionEvent")
    def on_transaction_event(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("TransactionEvent", call_unique_id, self._transaction_event)


# The default answers of the other station-initiated OCPP 2.0.1 actions.
_FIXED_201: dict[str, dict[str, Any]] = {
    "StatusNotification": {},
    "MeterValues": {},
    "NotifyReport": {},
    "NotifyEvent": {},
    "NotifyMonitoringReport": {},
    "NotifyChargingLimit": {},
    "ClearedChargingLimit": {},
    "ReportChargingProfiles": {},
    "ReservationStatusUpdate": {},
    "FirmwareStatusNotification": {},
    "PublishFirmwareStatusNotification": {},
    "LogStatusNotification": {},
    "SecurityEventNotification": {},
    "NotifyCustomerInformation": {},
    "NotifyDisplayMessages": {},
    "SignCertificate": {"status": "Accepted"},
    "DataTransfer": {"status": "Accepted"},
    # Accepted = processed; the CSMS sends no schedule unless a test does.
    "NotifyEVChargingNeeds": {"status": "Accepted"},
    "NotifyEVChargingSchedule": {"status": "Accepted"},
    # There is no certificate service behind this CSMS.
    "Get15118EVCertificate": {"status": "Failed", "exiResponse": ""},
    "GetCertificateStatus": {"status": "Failed"},
}


_FIXED_16: dict[str, dict[str, Any]] = {
    "MeterValues": {},
    "StatusNotification": {},
    "DataTransfer": {"status": "Accepted"},
    "DiagnosticsStatusNotification": {},
    "FirmwareStatusNotification": {},
    "SecurityEventNotification": {},
    "SignCertificate": {"status": "Accepted"},
    "SignedFirmwareStatusNotification": {},
    "LogStatusNotification": {},
}


def _fixed_handler(action: str, answer: dict[str, Any]) -> Callable[..., Any]:
    def handler(self: _Answering, call_unique_id: str, **_: Any) -> Any:
        return self._reply(action, call_unique_id, lambda p: copy.deepcopy(answer))

    # The ocpp package finds handlers by attribute name, so each needs its own.
    handler.__name__ = handler.__qualname__ = f"on_{action}"
    return _on(action)(handler)


for _cls, _table in ((_Ocpp16, _FIXED_16), (_Ocpp201, _FIXED_201)):
    for _action, _answer in _table.items():
        setattr(_cls, f"on_{_action}", _fixed_handler(_action, _answer))


# OCPP version -> the ChargePoint class that speaks it on the CSMS side.
_HANDLERS: dict[str, Callable[[StationSession], Any]] = {"1.6": _Ocpp16, "2.0.1": _Ocpp201}


class StationSession:
    """One connected station: send it CALLs or raw frames, or close its connection."""

    def __init__(self, csms: DevCsms, station_id: str, version: str, ws: ServerConnection) -> None:
        self.csms = csms
        self.id = station_id
        self.version = version
        self._ws = ws
        self._cp = _HANDLERS[version](self)
        self._in_calls: dict[str, str] = {}  # unique id -> action, of CALLs received
        self._out_calls: dict[str, str] = {}  # unique id -> action, of CALLs sent
        self._payloads: dict[str, dict[str, Any]] = {}  # unique id -> payload, of CALLs being handled
        self._closed = asyncio.Event()

    @property
    def connected(self) -> bool:
        """Whether the connection is still open."""
        return not self._closed.is_set()

    async def call(
        self, action: str, payload: dict[str, Any] | None = None, timeout: float = 10, validate: bool = True
    ) -> dict[str, Any]:
        """Send a CALL and return the CALLRESULT payload; raise ``CallErrorReply`` on a CALLERROR.

        Both payloads are schema-checked (an invalid one raises the ``ocpp`` package's
        ``OCPPError``) unless ``validate`` is False, for deliberately wrong messages.
        """
        request = Call(unique_id=str(uuid.uuid4()), action=action, payload=dict(payload or {}))
        if validate:
            await validate_payload(request, self.version)
        async with self._cp._call_lock:
            await self._cp._send(request.to_json())
            try:
                response = await self._cp._get_specific_response(request.unique_id, timeout)
            except TimeoutError:
                raise TimeoutError(f"{self.id} did not answer {action} within {timeout} s") from None
        if isinstance(response, CallError):
            raise CallErrorReply(response.error_code, response.error_description, response.error_details)
        result = cast(dict[str, Any], response.payload)
        if validate:
            response.action = action
            await validate_payload(response, self.version)  # may swap in a copy; `result` stays plain
        return result

    async def send_raw(self, text: str) -> None:
        """Send a text frame as is (recorded like any other frame)."""
        await self._cp._send(text)

    async def close(self, timeout: float = 10) -> None:
        """Close the connection and wait until its handler has finished."""
        await self._ws.close()
        await asyncio.wait_for(self._closed.wait(), timeout)

    def schema_error(self, action: str, payload: Any, response: bool = False) -> ocppj.RpcError | None:
        """What is wrong with a payload by its schema; None if nothing (or the action is
        unknown: the router answers that)."""
        try:
            ocppj.check(self.version, action, payload, response)
        except ocppj.RpcError as exc:
            return None if exc.kind == "not_implemented" else exc
        return None

    async def _run(self) -> None:
        """Receive frames until the connection closes; the ``ocpp`` package routes them."""
        try:
            while True:
                raw = await self._ws.recv()
                index = self._record_in(raw)
                try:
                    if index is not None:
                        entry = self.csms.timeline[index]
                        error = self.schema_error(entry.action, entry.payload)
                        if error is not None:
                            await self._cp._send(
                                Codec(self.version).error(entry.unique_id, error.kind, error.description)
                            )
                            continue
                    await self._cp.route_message(raw)
                finally:
                    if index is not None:
                        self._payloads.pop(self.csms.timeline[index].unique_id, None)
                        self.csms._handled(index)
        except ConnectionClosed:
            pass
        finally:
            self._closed.set()

    def _answer(
        self, action: str, unique_id: str, default: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """The reply to a station's CALL: a configured error or reply, else the default."""
        payload = self._payloads.get(unique_id, {})
        if action in self.csms.errors:
            code, description = self.csms.errors[action]
            raise _ConfiguredError(code, description)
        reply = self.csms.replies.get(action)
        if reply is None:
            return default(payload)
        return dict(reply(payload) if callable(reply) else reply)

    def _record_in(self, raw: str | bytes) -> int | None:
        """Record a received frame; return its timeline index if it is a CALL to handle."""
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        try:
            msg = unpack(raw)
        except OCPPError:
            msg = None
        if isinstance(msg, Call) and isinstance(msg.payload, dict):
            uid, action = str(msg.unique_id), str(msg.action)
            self._in_calls[uid] = action
            self._payloads[uid] = msg.payload
            return self.csms._record(self.id, "in", "call", action, msg.payload, uid, pending=True)
        if isinstance(msg, CallResult) and isinstance(msg.payload, dict):
            uid = str(msg.unique_id)
            self.csms._record(self.id, "in", "result", self._out_calls.pop(uid, ""), msg.payload, uid)
        elif isinstance(msg, CallError):
            uid = str(msg.unique_id)
            error = {
                "code": msg.error_code,
                "description": msg.error_description,
                "details": msg.error_details,
            }
            self.csms._record(self.id, "in", "error", self._out_calls.pop(uid, ""), error, uid)
        else:
            self.csms._record(self.id, "in", "raw", "", text)
        return None

    def _record_out(self, text: str) -> None:
        """Record a frame about to be sent."""
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        kind = frame[0] if isinstance(frame, list) and frame and len(frame) in (3, 4, 5) else None
        if kind == 2 and len(frame) == 4 and isinstance(frame[3], dict):
            uid, action = str(frame[1]), str(frame[2])
            self._out_calls[uid] = action
            self.csms._record(self.id, "out", "call", action, frame[3], uid)
        elif kind == 3 and len(frame) == 3 and isinstance(frame[2], dict):
            uid = str(frame[1])
            self.csms._record(self.id, "out", "result", self._in_calls.pop(uid, ""), frame[2], uid)
        elif kind == 4 and len(frame) == 5:
            uid = str(frame[1])
            error = {"code": frame[2], "description": frame[3], "details": frame[4]}
            self.csms._record(self.id, "out", "error", self._in_calls.pop(uid, ""), error, uid)
        else:
            self.csms._record(self.id, "out", "raw", "", text)


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
    ) -> None:
        unsupported = [v for v in versions if v not in _HANDLERS]
        if unsupported or not versions:
            raise ValueError(f"unsupported OCPP version(s) {unsupported}; supported: {', '.join(_HANDLERS)}")
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
        self._front: _TlsFront | None = None
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
            subprotocols=[Subprotocol(_SUBPROTOCOLS[v]) for v in self.versions],
            select_subprotocol=self._select_subprotocol,
            process_request=self._check_request,
        )
        port: int = self._server.sockets[0].getsockname()[1]
        if self.ssl_context is not None:
            self._front = _TlsFront(self, self.ssl_context, self.plain_too, port)
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
            if _SUBPROTOCOLS[version] in subprotocols:
                return Subprotocol(_SUBPROTOCOLS[version])
        wanted = ", ".join(_SUBPROTOCOLS[v] for v in self.versions)
        self._refuse(
            connection, HTTPStatus.BAD_REQUEST, f"no {wanted} subprotocol offered ({list(subprotocols)})"
        )
        raise NegotiationError(f"expected subprotocol {wanted}")

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None and ws.subprotocol is not None
        station_id = _station_id(ws.request.path)
        version = next(v for v in self.versions if _SUBPROTOCOLS[v] == ws.subprotocol)
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


# --- TLS -----------------------------------------------------------------------------------------

# A TLS connection starts with a handshake record; a plain one with "GET".
_TLS_HANDSHAKE = 0x16
_OPEN_TIMEOUT = 10.0  # s: for the first bytes and the TLS handshake
_CLOSE_TIMEOUT = 5.0  # s: for the other direction once one has ended
_CHUNK = 65536


class _TlsFront:
    """The listening socket of a TLS CSMS: does the TLS handshake (or, with ``plain_too``, lets a
    plain connection through as is) and relays the bytes to the plain websocket server inside.

    The TLS runs on memory buffers rather than in an asyncio TLS transport, which drops the
    alert of a failed handshake (the peer would see a bare reset instead of e.g. "protocol
    version") and does not tell the server why a handshake failed.
    """

    def __init__(self, csms: DevCsms, context: ssl.SSLContext, plain_too: bool, inner_port: int) -> None:
        self._csms = csms
        self._context = context
        self._plain_too = plain_too
        self._inner_port = inner_port
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._opening: set[asyncio.Task[None]] = set()  # connections before their relay runs
        self._tasks: set[asyncio.Task[None]] = set()
        self._tls: dict[int, dict[str, Any]] = {}  # relay's port on the inside -> TLS details

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host``:``port``; return the port (the actual one for port 0)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family)
        self._listener.setblocking(False)
        self._accepting = asyncio.create_task(self._accept(self._listener))
        return int(self._listener.getsockname()[1])

    def close(self) -> None:
        """Stop accepting and drop the connections not relayed yet."""
        if self._accepting is not None:
            self._accepting.cancel()
        if self._listener is not None:
            self._listener.close()
        for task in self._opening:
            task.cancel()

    async def wait_closed(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Wait for the relays to end (the server inside closes its side), then cut what is left."""
        if self._accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._tasks:
            _, left = await asyncio.wait(self._tasks, timeout=timeout)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    def tls_of(self, inner_port: int) -> dict[str, Any] | None:
        """The TLS details of the connection relayed from this port, or None (a plain one)."""
        return self._tls.get(inner_port)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, peer = await loop.sock_accept(listener)
            task = asyncio.create_task(self._connection(sock, _address(peer)))
            for tasks in (self._opening, self._tasks):
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    async def _connection(self, sock: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        inner = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        inner.setblocking(False)
        try:
            outside = await self._open_outside(sock, peer)
            if outside is None:
                return
            await loop.sock_connect(inner, ("127.0.0.1", self._inner_port))
            inner_port = int(inner.getsockname()[1])
            if outside.tls is not None:
                self._tls[inner_port] = _tls_details(outside.tls)
            task = asyncio.current_task()
            if task is not None:
                self._opening.discard(task)
            try:
                await _relay(outside, _Side(inner))
            finally:
                self._tls.pop(inner_port, None)
        finally:
            sock.close()
            inner.close()

    async def _open_outside(self, sock: socket.socket, peer: str) -> _Side | None:
        """The station's side, after the TLS handshake unless it is a plain connection; None if
        the station sent nothing or the handshake failed."""
        loop = asyncio.get_running_loop()
        tls = not self._plain_too
        try:
            async with asyncio.timeout(_OPEN_TIMEOUT):
                first = await loop.sock_recv(sock, _CHUNK)
                if not first:
                    return None
                tls = not self._plain_too or first[0] == _TLS_HANDSHAKE
                side = _Side(sock, self._context if tls else None, first)
                if tls:
                    await side.handshake()
                return side
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            if tls:
                error, reason = _handshake_error(exc)
                self._csms._record("", "in", "refused", "", {"error": error, "reason": reason, "peer": peer})
            return None


class _Side:
    """One end of a relayed connection: a socket, with TLS (on memory buffers) or without.

    ``received`` is what was read from the socket already (the first bytes of a connection).
    """

    def __init__(
        self, sock: socket.socket, context: ssl.SSLContext | None = None, received: bytes = b""
    ) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = (
            None if context is None else context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        )
        self._early = received
        if self.tls is not None:
            self._incoming.write(received)
            self._early = b""
        self._sending = asyncio.Lock()

    async def handshake(self) -> None:
        """Do the TLS handshake; a failure raises its ``ssl.SSLError`` after sending the alert to the peer."""
        assert self.tls is not None
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._send_pending()
                await self._receive()
            except ssl.SSLError:
                with contextlib.suppress(OSError):
                    await self._send_pending()
                raise
        await self._send_pending()

    async def read(self) -> bytes:
        """The next bytes received (decrypted), b"" at the end."""
        if self.tls is None:
            early, self._early = self._early, b""
            return early or await asyncio.get_running_loop().sock_recv(self._sock, _CHUNK)
        while True:
            try:
                return self.tls.read(_CHUNK)
            except ssl.SSLWantReadError:
                await self._send_pending()  # TLS 1.3 may answer, e.g. a key update
                await self._receive()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def write(self, data: bytes) -> None:
        if self.tls is None:
            await asyncio.get_running_loop().sock_sendall(self._sock, data)
        else:
            self.tls.write(data)
            await self._send_pending()

    async def end(self) -> None:
        """Stop sending (TLS: a close_notify) and go on receiving."""
        if self.tls is None:
            self._sock.shutdown(socket.SHUT_WR)
            return
        with contextlib.suppress(ssl.SSLError):  # it wants to read the peer's close_notify: no need
            self.tls.unwrap()
        await self._send_pending()

    async def _receive(self) -> None:
        data = await asyncio.get_running_loop().sock_recv(self._sock, _CHUNK)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def _send_pending(self) -> None:
        # The lock keeps the records in order when both directions of a relay produce some.
        async with self._sending:
            data = self._outgoing.read()
            if data:
                await asyncio.get_running_loop().sock_sendall(self._sock, data)


async def _pump(source: _Side, sink: _Side) -> None:
    while data := await source.read():
        await sink.write(data)
    await sink.end()


async def _relay(a: _Side, b: _Side) -> None:
    """Copy bytes both ways until both directions have ended (the second within a timeout of
    the first) or one fails."""
    pumps = {asyncio.create_task(_pump(a, b)), asyncio.create_task(_pump(b, a))}
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        if all(task.exception() is None for task in done):
            await asyncio.wait(pumps, timeout=_CLOSE_TIMEOUT)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def _address(peer: Any) -> str:
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tls_details(tls: ssl.SSLObject) -> dict[str, Any]:
    cert = tls.getpeercert()
    rdns = cast(tuple[tuple[tuple[str, str], ...], ...], cert.get("subject", ()) if cert else ())
    subject = {key: value for rdn in rdns for key, value in rdn} if cert else None
    return {"version": tls.version(), "client_cert": subject}


def _handshake_error(exc: BaseException) -> tuple[str, str]:
    """``(OpenSSL reason or exception class, message)`` of a failed TLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.reason or "CERTIFICATE_VERIFY_FAILED"), str(exc.verify_message)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        # "[SSL: UNSUPPORTED_PROTOCOL] unsupported protocol (_ssl.c:1006)" -> "unsupported protocol"
        return str(exc.reason), re.sub(r"^\[SSL: \w+\] | \(_ssl\.c:\d+\)$", "", str(exc.strerror or exc))
    if isinstance(exc, TimeoutError):
        return "TimeoutError", f"no TLS handshake within {_OPEN_TIMEOUT:g} s"
    return type(exc).__name__, str(exc) or "the connection ended during the TLS handshake"


# --- timeline lines ---------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _sampled(sample: dict[str, Any]) -> str:
    """One sampled value: 1.6 has a ``unit``, 2.0.1 a ``unitOfMeasure`` with a power-of-ten multiplier."""
    measurand = sample.get("measurand", "Energy.Active.Import.Register")
    unit_of_measure = _dict(sample.get("unitOfMeasure"))
    unit = sample.get("unit", unit_of_measure.get("unit", "Wh"))
    value = _number(sample.get("value"))
    if value is not None:
        value *= 10 ** (_number(unit_of_measure.get("multiplier")) or 0)
    phase = f" {sample['phase']}" if "phase" in sample else ""
    if value is not None and measurand == "Power.Active.Import" and unit in ("W", "kW"):
        return f"{value / 1000 if unit == 'W' else value:.1f} kW{phase}"
    if value is not None and measurand == "Energy.Active.Import.Register" and unit in ("Wh", "kWh"):
        return f"{value * 1000 if unit == 'kWh' else value:.1f} Wh{phase}"
    return f"{measurand} {sample.get('value')} {unit}{phase}"


def _last_samples(meter_values: Any) -> list[dict[str, Any]]:
    """The sampled values of the last meter value of a list."""
    last = _dict(meter_values[-1]) if isinstance(meter_values, list) and meter_values else {}
    return [s for s in last.get("sampledValue", []) if isinstance(s, dict)]


def _variable(item: dict[str, Any]) -> str:
    """A 2.0.1 component and variable: ``Component[evse,connector]:instance.Variable:instance``."""
    component, variable = _dict(item.get("component")), _dict(item.get("variable"))
    evse = _dict(component.get("evse"))
    where = ",".join(str(evse[k]) for k in ("id", "connectorId") if k in evse)
    text = str(component.get("name")) + (f"[{where}]" if where else "")
    text += f":{component['instance']}" if "instance" in component else ""
    text += f".{variable.get('name')}"
    return text + (f":{variable['instance']}" if "instance" in variable else "")


def _items(p: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [item for item in p.get(key) or [] if isinstance(item, dict)]


def _brief(payload: dict[str, Any]) -> str:
    """Top-level fields as ``key=value``, status first and shortened (a CSR or an EXI blob is long)."""
    parts = [str(payload["status"])] if isinstance(payload.get("status"), str) else []
    for key, value in payload.items():
        if key == "status" and parts:
            continue
        if isinstance(value, dict):
            value = value.get("status", value.get("idToken", "{...}"))
        elif isinstance(value, list):
            value = f"[{len(value)}]"
        text = str(value)
        parts.append(f"{key}={text if len(text) <= 60 else text[:57] + '...'}")
    return " ".join(parts)


def _boot_line(p: dict[str, Any]) -> str:
    station = p.get("chargingStation")
    if isinstance(station, dict):  # 2.0.1
        line = f"vendor={station.get('vendorName')} model={station.get('model')}"
        firmware, reason = station.get("firmwareVersion"), f" reason={p.get('reason')}"
    else:
        line = f"vendor={p.get('chargePointVendor')} model={p.get('chargePointModel')}"
        firmware, reason = p.get("firmwareVersion"), ""
    return line + (f" firmware={firmware}" if firmware else "") + reason


def _status_line(p: dict[str, Any]) -> str:
    if "connectorStatus" in p:  # 2.0.1
        return f"evse {p.get('evseId')}/{p.get('connectorId')} {p.get('connectorStatus')}"
    error = f" ({p.get('errorCode')})" if p.get("errorCode", "NoError") != "NoError" else ""
    return f"connector {p.get('connectorId')}: {p.get('status')}{error}"


def _meter_line(p: dict[str, Any]) -> str:
    values = ", ".join(_sampled(s) for s in _last_samples(p.get("meterValue")))
    if "evseId" in p:  # 2.0.1
        return f"evse {p['evseId']}: {values}"
    tx = f" tx {p['transactionId']}" if "transactionId" in p else ""
    return f"connector {p.get('connectorId')}{tx}: {values}"


def _authorize_line(p: dict[str, Any]) -> str:
    token = p.get("idToken")
    if isinstance(token, dict):  # 2.0.1
        return f"idToken {token.get('idToken')} ({token.get('type')})"
    return f"idTag {p.get('idTag')}"


def _transaction_line(p: dict[str, Any]) -> str:
    """``Started tx=<id> seq=<n> trigger=<reason> <chargingState> [offline] <energy>``, then extras."""
    info = _dict(p.get("transactionInfo"))
    parts = [
        str(p.get("eventType")),
        f"tx={info.get('transactionId')}",
        f"seq={p.get('seqNo')}",
        f"trigger={p.get('triggerReason')}",
    ]
    parts += [str(info["chargingState"])] if "chargingState" in info else []
    parts += ["offline"] if p.get("offline") else []
    parts += [
        _sampled(s)
        for s in _last_samples(p.get("meterValue"))
        if s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
        and "phase" not in s
    ]
    evse = _dict(p.get("evse"))
    parts += [f"evse={evse['id']}"] if "id" in evse else []
    token = _dict(p.get("idToken"))
    parts += [f"idToken={token['idToken']}"] if "idToken" in token else []
    parts += [f"reason={info['stoppedReason']}"] if "stoppedReason" in info else []
    return " ".join(parts)


def _report_line(p: dict[str, Any], key: str, noun: str) -> str:
    tbc = " tbc" if p.get("tbc") else ""
    return f"requestId={p.get('requestId')} seqNo={p.get('seqNo')}{tbc} {len(_items(p, key))} {noun}"


def _token_status(p: dict[str, Any]) -> Any:
    """The status of a 1.6 idTagInfo or a 2.0.1 idTokenInfo, or None."""
    return _dict(p.get("idTagInfo", p.get("idTokenInfo"))).get("status")


def _status_or_brief(p: dict[str, Any]) -> str:
    status = _token_status(p)
    return str(status) if status else _brief(p) or "ok"


# action -> the one-line summary of a CALL, of both versions (told apart by their fields).
_CALL_LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "BootNotification": _boot_line,
    "StatusNotification": _status_line,
    "MeterValues": _meter_line,
    "Authorize": _authorize_line,
    "StartTransaction": lambda p: (
        f"connector {p.get('connectorId')} idTag {p.get('idTag')} meterStart {p.get('meterStart')} Wh"
    ),
    "StopTransaction": lambda p: (
        f"transaction {p.get('transactionId')} meterStop {p.get('meterStop')} Wh"
        + (f" reason {p['reason']}" if "reason" in p else "")
    ),
    "TransactionEvent": _transaction_line,
    "NotifyEvent": lambda p: ", ".join(
        f"{_variable(e)}={e.get('actualValue')}" for e in _items(p, "eventData")
    ),
    "NotifyReport": lambda p: _report_line(p, "reportData", "items"),
    "NotifyMonitoringReport": lambda p: _report_line(p, "monitor", "monitors"),
    "GetVariables": lambda p: ", ".join(_variable(i) for i in _items(p, "getVariableData")),
    "SetVariables": lambda p: ", ".join(
        f"{_variable(i)}={i.get('attributeValue')}" for i in _items(p, "setVariableData")
    ),
}

# action -> the one-line summary of a CALLRESULT.
_RESULT_LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "BootNotification": lambda p: f"{p.get('status')} interval={p.get('interval')}",
    "Heartbeat": lambda p: str(p.get("currentTime")),
    "StartTransaction": lambda p: f"transaction {p.get('transactionId')} ({_token_status(p)})",
    "Authorize": _status_or_brief,
    "StopTransaction": _status_or_brief,
    "TransactionEvent": _status_or_brief,
    "GetVariables": lambda p: ", ".join(
        _variable(r)
        + (f"={r['attributeValue']}" if "attributeValue" in r else "")
        + f" {r.get('attributeStatus')}"
        for r in _items(p, "getVariableResult")
    ),
    "SetVariables": lambda p: ", ".join(
        f"{_variable(r)} {r.get('attributeStatus')}" for r in _items(p, "setVariableResult")
    ),
}


def _call_summary(action: str, p: dict[str, Any]) -> str:
    line = _CALL_LINES.get(action)
    return line(p) if line is not None else _brief(p)


def _result_summary(action: str, p: dict[str, Any]) -> str:
    line = _RESULT_LINES.get(action)
    return line(p) if line is not None else _brief(p) or "ok"


def _summary(line: Callable[[str, dict[str, Any]], str], action: str, p: dict[str, Any]) -> str:
    """A summary line; a payload too malformed for it (it may not be validated yet) gets the brief one."""
    try:
        return line(action, p)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return _brief(p)


def describe(entry: Entry) -> str:
    """A one-line, human-friendly description of a timeline entry."""
    p = entry.payload
    arrow = "->" if entry.direction == "in" else "<-"
    head = f"{entry.station} {arrow} {entry.action or '?'}"
    if isinstance(p, str):
        text = p if len(p) <= 100 else p[:97] + "..."
        return f"{entry.station} {arrow} raw frame: {text!r}"
    if entry.kind == "call":
        summary = _summary(_call_summary, entry.action, p)
        return f"{head}  {summary}" if summary else head
    if entry.kind == "result":
        return f"{head}: {_summary(_result_summary, entry.action, p) or 'ok'}"
    if entry.kind == "error":
        return f"{head}: CALLERROR {p.get('code')} {p.get('description')!r}"
    if entry.kind == "connect":
        tls = _dict(p.get("tls"))
        cert = _dict(tls.get("client_cert"))
        extra = f", {tls.get('version')}" if tls else ""
        extra += f", client certificate {cert.get('commonName')}" if cert else ""
        return f"{entry.station} connected ({p.get('subprotocol')}, {p.get('path')}{extra})"
    if entry.kind == "disconnect":
        reason = f" {p['reason']}" if p.get("reason") else ""
        return f"{entry.station} disconnected (code {p.get('code')}{reason})"
    if "status" not in p:
        return f"{entry.station or '?'} refused: TLS handshake failed ({p.get('error')}): {p.get('reason')}"
    return f"{entry.station or '?'} refused: HTTP {p.get('status')} {p.get('reason')}"


# --- running from a thread --------------------------------------------------------------------


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


# --- command line ------------------------------------------------------------------------------


# What ``--version auto`` stands for: the newest first.
_AUTO = ("2.0.1", "1.6")


def _cli_versions(chosen: Iterable[str]) -> tuple[str, ...]:
    """The ``--version`` values in order, ``auto`` expanded, each version once."""
    expanded = [v for choice in chosen for v in (_AUTO if choice == "auto" else (choice,))]
    return tuple(dict.fromkeys(expanded))


def _cli_ssl_context(cert: str, key: str | None, ca: str | None) -> ssl.SSLContext:
    """The server context of ``--tls-*``: TLS 1.2 or newer; client certificates required with a CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=ca)
    return context


def _listening_urls(csms: DevCsms) -> list[str]:
    return [csms.url, csms.tls_url] if csms.plain_too else [csms.url]


def main(argv: Iterable[str] | None = None) -> int:
    """Run the CSMS in the foreground, printing the timeline, until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m hil.csms", description="Development OCPP CSMS.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=9000, help="port (default %(default)s; 0 = any free)")
    parser.add_argument(
        "--boot-status",
        default="Accepted",
        choices=["Accepted", "Pending", "Rejected"],
        help="BootNotification status",
    )
    parser.add_argument(
        "--heartbeat", type=int, default=300, help="heartbeat interval in s (default %(default)s)"
    )
    parser.add_argument(
        "--version",
        action="append",
        dest="versions",
        choices=[*_SUBPROTOCOLS, "auto"],
        help="OCPP version to accept; repeat for several, preferred first; auto = 2.0.1, then 1.6 "
        "(default 1.6)",
    )
    parser.add_argument("--tls-cert", help="PEM certificate chain (leaf first): serve wss:// (profile 2)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert (default: in the --tls-cert file)")
    parser.add_argument(
        "--tls-ca", help="PEM CA certificates: require client certificates signed by them (profile 3)"
    )
    parser.add_argument(
        "--plain-too", action="store_true", help="with --tls-cert: take ws:// on the same port as well"
    )
    args = parser.parse_args(None if argv is None else list(argv))
    versions = _cli_versions(args.versions or ["1.6"])
    if args.tls_cert is None and (args.tls_key or args.tls_ca or args.plain_too):
        parser.error("--tls-key, --tls-ca and --plain-too need --tls-cert")
    context = _cli_ssl_context(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None

    async def run() -> None:
        csms = DevCsms(
            host=args.host,
            port=args.port,
            versions=versions,
            boot_status=args.boot_status,
            heartbeat_interval=args.heartbeat,
            ssl_context=context,
            plain_too=args.plain_too,
        )
        await csms.start()
        names = ", ".join(versions)
        urls = " or ".join(f"{url}/<station id>" for url in _listening_urls(csms))
        print(f"dev CSMS (OCPP {names}) listening: connect stations to {urls}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await csms.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
