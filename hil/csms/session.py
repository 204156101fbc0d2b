"""One connected station, seen from the CSMS: its frames recorded, CALLs sent and answered."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ocpp.exceptions import OCPPError  # type: ignore[import-untyped]
from ocpp.messages import Call, CallError, CallResult, unpack, validate_payload  # type: ignore[import-untyped]
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from controller.ocpp import ocppj
from controller.ocpp.ocppj import Codec
from hil.csms.answering import ConfiguredError
from hil.csms.versions import HANDLERS

if TYPE_CHECKING:
    from hil.csms.server import DevCsms


class CallErrorReply(Exception):
    """The station answered a CALL with a CALLERROR."""

    def __init__(self, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


class StationSession:
    """One connected station: send it CALLs or raw frames, or close its connection."""

    def __init__(self, csms: DevCsms, station_id: str, version: str, ws: ServerConnection) -> None:
        self.csms = csms
        self.id = station_id
        self.version = version
        self._ws = ws
        self._cp = HANDLERS[version](self)
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
            raise ConfiguredError(code, description)
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
