"""The websocket to the CSMS: connect, reconnect, and move OCPP-J frames.

The version adapters see two things: ``call()`` to send a request and wait for its
answer (one at a time, as OCPP-J requires), and a handler that answers the CSMS's
requests. A frame that is not JSON, an unknown message type or a payload that breaks the
schema gets the error reply the spec asks for; none of them closes the connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from controller.io.logs import FrameLog
from controller.ocpp.ocppj import SUBPROTOCOLS, Call, CallError, CallResult, Codec, FrameError, RpcError

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0  # CONTRACTS: never longer than 60 s between attempts
OPEN_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 16 * 1024 * 1024  # a SendLocalList of 50,000 entries is about 4 MiB


class SetupError(Exception):
    """The station cannot prepare a connection (e.g. its TLS settings); retried later."""


class NotConnected(Exception):
    """No connection to the CSMS (or it closed while waiting for an answer)."""


class CallFailed(Exception):
    """The CSMS answered with a CALLERROR, or with a reply that breaks the schema."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


@dataclass
class Reply:
    """What a handler returns: the payload, and work to do once it has been sent."""

    payload: dict[str, Any]
    then: Callable[[], Awaitable[None]] | None = None


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass
class Endpoint:
    url: str  # ocpp.url + "/" + station id
    station_id: str
    versions: tuple[str, ...]  # offered, preferred first
    password: str = ""
    ssl_context: ssl.SSLContext | None = None
    ping_interval_s: float | None = 30.0


def backoff(attempt: int) -> float:
    """Capped exponential back-off with full jitter in its upper half."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(attempt, 10))
    return random.uniform(ceiling / 2, ceiling)


class Link:
    def __init__(
        self,
        endpoint: Endpoint,
        handler: Handler,
        on_open: Callable[[str], Awaitable[None]],
        on_close: Callable[[], None],
        frames: FrameLog | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.handler = handler
        self.on_open = on_open
        self.on_close = on_close
        self.frames = frames
        # Called before every frame goes out: the rig's view of the station is sent to the
        # safety process first, so a rig that sees a message at the CSMS sees its cause too.
        self.before_send: Callable[[], None] = lambda: None
        self.version: str | None = None
        self.codec: Codec | None = None
        self._ws: ClientConnection | None = None
        self._lock = asyncio.Lock()
        self._pending: tuple[str, str, asyncio.Future[dict[str, Any]]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.attempts = 0
        # Set by the owner: pick the endpoint before each attempt, hear of failed ones
        # and of frames from the CSMS that break the protocol.
        self.choose: Callable[[], Endpoint] | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        self.on_invalid: Callable[[str], None] | None = None
        self.lost_with: BaseException | None = None  # why the last connection was lost
        self.backoff: Callable[[int], float] = backoff  # the wait before attempt n + 1

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def run(self) -> None:
        while True:
            try:
                if self.choose is not None:
                    self.endpoint = self.choose()
                await self._session()
                self.attempts = 0
            except SetupError as exc:
                self.attempts += 1
                log.error("cannot connect to the CSMS: %s", exc)
                self._failed(exc)
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
                self.attempts += 1
                self._log_failure(exc)
                self._failed(exc)
            except Exception:
                # Whatever else the network library raises (a URL it cannot use, a bug of
                # its own), the station keeps running and keeps trying.
                self.attempts += 1
                log.exception("connection to %s failed unexpectedly; retrying", self.endpoint.url)
            await asyncio.sleep(self.backoff(self.attempts))

    def _connection_class(self) -> type[ClientConnection]:
        link = self

        class Connection(ClientConnection):
            # With TLS 1.3 a CSMS refuses a client certificate after the handshake: the
            # alert arrives only here, while websockets reports a closed connection.
            def connection_lost(self, exc: Exception | None) -> None:
                if exc is not None:
                    link.lost_with = exc
                super().connection_lost(exc)

        return Connection

    def _failed(self, exc: BaseException) -> None:
        if self.on_failure is not None:
            try:
                self.on_failure(exc)
            except Exception:
                log.exception("handling a failed connection failed")

    def _invalid(self, what: str) -> None:
        if self.on_invalid is not None:
            try:
                self.on_invalid(what)
            except Exception:
                log.exception("handling an invalid frame failed")

    async def reconnect(self) -> None:
        """Close the connection; the next attempt picks its endpoint again."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(1000, "reconnecting"), 2.0)

    def _log_failure(self, exc: BaseException) -> None:
        level = logging.WARNING if self.attempts <= 3 or self.attempts % 10 == 0 else logging.DEBUG
        if isinstance(exc, InvalidStatus) and exc.response.status_code == 401:
            reason = "the CSMS refused our credentials (HTTP 401): check ocpp.password and station.id"
        elif isinstance(exc, InvalidStatus):
            reason = f"the CSMS answered HTTP {exc.response.status_code}: check ocpp.url"
        else:
            reason = str(exc) or type(exc).__name__
        log.log(level, "cannot connect to %s (attempt %d): %s", self.endpoint.url, self.attempts, reason)

    def _headers(self) -> dict[str, str]:
        if not self.endpoint.password:
            return {}
        raw = f"{self.endpoint.station_id}:{self.endpoint.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}

    async def _session(self) -> None:
        endpoint = self.endpoint
        protocols = [SUBPROTOCOLS[v] for v in endpoint.versions]
        self.lost_with = None
        ws = await connect(
            endpoint.url,
            create_connection=self._connection_class(),
            subprotocols=protocols,  # type: ignore[arg-type]
            additional_headers=self._headers(),
            ssl=endpoint.ssl_context,
            ping_interval=endpoint.ping_interval_s,
            ping_timeout=endpoint.ping_interval_s,
            open_timeout=OPEN_TIMEOUT_S,
            close_timeout=2,
            max_size=MAX_FRAME_BYTES,
            proxy=None,
        )
        chosen = ws.subprotocol
        version = next((v for v, p in SUBPROTOCOLS.items() if p == chosen), None)
        if version is None or version not in endpoint.versions:
            await ws.close(1002, "no OCPP subprotocol agreed")
            raise InvalidHandshake(f"the CSMS agreed no OCPP subprotocol we offered (got {chosen!r})")
        self.version, self.codec, self._ws = version, Codec(version), ws
        self.attempts = 0
        log.info("connected to %s (OCPP %s)", endpoint.url, version)
        opened = self._spawn(self.on_open(version))
        try:
            async for frame in ws:
                self._receive(frame)
        finally:
            self._ws = None
            opened.cancel()
            if self._pending is not None and not self._pending[2].done():
                self._pending[2].set_exception(NotConnected("connection closed"))
            log.warning("connection to the CSMS closed (%s)", ws.close_reason or ws.close_code or "no reason")
            self.on_close()

    # -- frames in ---------------------------------------------------------------------

    def _receive(self, frame: str | bytes) -> None:
        codec = self.codec
        assert codec is not None
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        if self.frames:
            self.frames.record("in", text)
        try:
            message = codec.decode(text)
        except FrameError as exc:
            log.warning("bad frame from the CSMS: %s: %.200s", exc, text)
            self._invalid(str(exc))
            if exc.reply is not None:
                self._send(exc.reply)
            return
        match message:
            case Call():
                self._spawn(self._answer(message))
            case CallResult(unique_id, payload):
                self._resolve(unique_id, payload, None)
            case CallError(unique_id, code, description):
                self._resolve(unique_id, None, CallFailed(code, description))

    def _resolve(self, unique_id: str, payload: dict[str, Any] | None, error: CallFailed | None) -> None:
        pending = self._pending
        if pending is None or pending[0] != unique_id or pending[2].done():
            log.warning("answer %s matches no request in flight; ignored", unique_id)
            return
        _, action, future = pending
        if error is None:
            assert payload is not None and self.codec is not None
            try:
                self.codec.validate_result(action, payload)
            except RpcError as exc:
                error = CallFailed(self.codec.names[exc.kind], f"{action} answer: {exc.description}")
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(payload or {})

    async def _answer(self, call: Call) -> None:
        codec = self.codec
        assert codec is not None
        try:
            codec.validate_call(call)
            reply = await self.handler(call)
            text = codec.result(call, reply.payload)
        except RpcError as exc:
            log.warning("%s from the CSMS refused: %s", call.action, exc.description or exc.kind)
            if exc.kind in ("format", "property", "occurrence", "type"):
                self._invalid(f"{call.action}: {exc.description or exc.kind}")
            self._send(codec.error(call.unique_id, exc.kind, exc.description, exc.details))
            return
        except Exception:
            log.exception("handling %s failed", call.action)
            self._send(codec.error(call.unique_id, "internal", f"{call.action} could not be handled"))
            return
        await self._send_now(text)
        if reply.then is not None:
            self._spawn(reply.then())

    # -- frames out --------------------------------------------------------------------

    def _send(self, text: str) -> None:
        self._spawn(self._send_now(text))

    async def _send_now(self, text: str) -> None:
        ws = self._ws
        if ws is None:
            return
        if self.frames:
            self.frames.record("out", text)
        self.before_send()
        with contextlib.suppress(ConnectionClosed):
            await ws.send(text)

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Send a request and return the CSMS's answer.

        Raises ``NotConnected``, ``CallFailed`` (CALLERROR or an invalid answer) or
        ``TimeoutError``.
        """
        async with self._lock:
            ws, codec = self._ws, self.codec
            if ws is None or codec is None:
                raise NotConnected("not connected to the CSMS")
            unique_id, text = codec.call(action, payload)
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending = (unique_id, action, future)
            try:
                if self.frames:
                    self.frames.record("out", text)
                self.before_send()
                try:
                    await ws.send(text)
                except ConnectionClosed as exc:
                    raise NotConnected("connection closed") from exc
                return await asyncio.wait_for(future, timeout)
            finally:
                self._pending = None

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("OCPP task failed", exc_info=task.exception())

    async def close(self) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 0.5)
        for task in list(self._tasks):
            task.cancel()
