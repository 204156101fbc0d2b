"""The safety process as the OCPP process sees it (``controller.safety.process``).

Each EVSE is a ``RemoteChannel``: what the services write to it (permit, meter state,
hardware cap, unlock requests) is sent at once, and what the safety process reports
(views, lock, ticks) is kept on it. A thread of its own sends the heartbeat, so an event
loop busy with OCPP work for a while is not mistaken for a dead one; a stopped or dead
process is (the safety process then opens every contactor).

If the safety process ends or goes silent, every EVSE is reported Faulted and the
daemon exits for systemd to restart the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from itertools import count
from typing import Any, Generic, TypeVar, overload

from controller.config import Config
from controller.runtime.safety_side import ChannelPort, Publish
from controller.runtime.startup import StartupError
from controller.runtime.status import StatusReport
from controller.safety import wire
from controller.safety.pilot import CpState, PilotMode
from controller.safety.spawn import SafetyChild
from controller.safety.supervisor import ContactorTest, Fault
from controller.safety.view import EvseView
from drivers.base import DriverError, MeterDriver, MeterReading, RfidDriver

log = logging.getLogger(__name__)
T = TypeVar("T")

READY_S = 5.0  # the safety process answers this soon after start (it is forked first)
SILENT_S = 1.0  # the safety process reports every 0.25 s: silent this long, it is hung
SAFE_S = 0.7  # an orderly stop: its control loops stop within 0.5 s
# The rig's OCPP fields go when the station changes and before each frame to the CSMS;
# this often besides, for what changes otherwise (the link going down, the queue).
STATUS_S = 1.0


class _Input(Generic[T]):
    """An input of a remote control loop: written here, sent whole on every change."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = f"_{name}"

    @overload
    def __get__(self, channel: None, owner: type) -> _Input[T]: ...
    @overload
    def __get__(self, channel: RemoteChannel, owner: type) -> T: ...
    def __get__(self, channel: RemoteChannel | None, owner: type) -> T | _Input[T]:
        if channel is None:
            return self
        value: T = getattr(channel, self.attribute)
        return value

    def __set__(self, channel: RemoteChannel, value: T) -> None:
        if value != getattr(channel, self.attribute):
            setattr(channel, self.attribute, value)
            channel.link.sync(channel)


class RemoteChannel:
    permit = _Input[tuple[bool, float]]()
    meter = _Input[tuple[bool, float | None]]()
    max_current_a = _Input[float]()
    unlock_waiters = _Input[int]()

    def __init__(self, link: SafetyLink, evse_id: int, max_current_a: float, lock_fitted: bool) -> None:
        self.link = link
        self.evse_id = evse_id
        self._lock_fitted = lock_fitted
        self._permit: tuple[bool, float] = (False, 0.0)
        self._meter: tuple[bool, float | None] = (True, None)
        self._max_current_a = max_current_a
        self._unlock_waiters = 0
        self.view: EvseView | None = None
        self.lock_state: tuple[bool, bool] = (False, False)
        self.contactor_test = ContactorTest.IDLE
        self.ticks = 0
        self.departures = 0  # as the safety process counts them; echoed with the permit

    @property
    def lock_fitted(self) -> bool:
        return self._lock_fitted

    def datagram(self) -> bytes:
        return wire.encode(
            "evse",
            evse=self.evse_id,
            permit=list(self._permit),
            meter=list(self._meter),
            cap=self._max_current_a,
            unlock=self._unlock_waiters,
            departures=self.departures,
        )


class SimMeterProxy:
    """A simulated meter, read in the safety process where the simulated world is."""

    def __init__(self, link: SafetyLink, evse_id: int) -> None:
        self.link, self.evse_id = link, evse_id

    async def read(self) -> MeterReading:
        return await self.link.read_meter(self.evse_id)

    async def close(self) -> None:
        pass


class SimRfidProxy:
    """The simulated reader: tokens the rig presents, sent on by the safety process."""

    def __init__(self, swipes: asyncio.Queue[str]) -> None:
        self.swipes = swipes

    async def tokens(self) -> AsyncIterator[str]:
        while True:
            yield await self.swipes.get()

    async def close(self) -> None:
        pass


class SafetyLink:
    def __init__(self, child: SafetyChild, config: Config) -> None:
        self.child = child
        self.sock = child.sock
        self.sock.setblocking(False)
        self._channels = {
            e.id: RemoteChannel(self, e.id, e.max_current_a, e.lock.driver != "none") for e in config.evses
        }
        self.swipes: asyncio.Queue[str] = asyncio.Queue()
        self.ready = asyncio.Event()
        self.safe = asyncio.Event()
        self.ended = asyncio.Event()
        self.reason: str | None = None  # why the safety process failed, if it did
        self.heard_at = time.monotonic()
        self._publish: Publish | None = None
        self._readings: dict[int, asyncio.Future[MeterReading]] = {}
        self._ids = count(1)
        self._unsent = False
        self._synced_pending = False  # a resync answered but "synced" not yet sent
        self._status_sent: dict[str, Any] | None = None
        self._status_task: asyncio.Task[None] | None = None
        self._report: StatusReport | None = None
        self._stop_beat = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="safety-heartbeat", daemon=True)

    @property
    def channels(self) -> Mapping[int, ChannelPort]:
        return self._channels

    def sim_meter(self, evse_id: int) -> MeterDriver:
        return SimMeterProxy(self, evse_id)

    def sim_rfid(self) -> RfidDriver:
        return SimRfidProxy(self.swipes)

    # -- the safety side's life ------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock, self._readable)
        self._beat.start()
        for channel in self._channels.values():
            self.sync(channel)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._first(self.ready, self.ended)), READY_S)
        if not self.ready.is_set():
            raise StartupError(self.reason or f"the safety process did not answer within {READY_S:.0f} s")
        log.info(
            "safety process %d ready %.0f ms after the start",
            self.child.pid,
            (time.monotonic() - self.child.started_at) * 1000,
        )

    @staticmethod
    async def _first(*events: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    async def start(self, publish: Publish, report: StatusReport) -> None:
        self._publish = publish
        for evse_id, channel in self._channels.items():
            if channel.view is not None:
                publish(evse_id, channel.view)
        self._report = report
        self._status_task = asyncio.create_task(self._send_status(), name="rig status")

    def failure(self) -> str | None:
        try:
            self._readable()  # what waits on the socket counts: the event loop may have been busy
        except Exception:
            log.exception("safety channel: handling a message failed")
        if self.reason is None and time.monotonic() - self.heard_at > SILENT_S:
            self._failed(f"the safety process {self.child.pid} has been silent for over {SILENT_S:.0f} s")
        if self.reason is None and self._status_task is not None and self._status_task.done():
            self._failed("the rig status task ended")
        return self.reason

    async def make_safe(self) -> None:
        if self.ended.is_set():
            return
        self._send(wire.encode("safe"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._first(self.safe, self.ended)), SAFE_S)

    async def close(self) -> None:
        self._stop_beat.set()
        if self._status_task is not None:
            self._status_task.cancel()
        self._send(wire.encode("exit"))
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.sock)
        status = await asyncio.to_thread(self.child.end)
        if status not in (0, None):
            log.error("the safety process exited with status %s", status)

    # -- sending ---------------------------------------------------------------------------

    def sync(self, channel: RemoteChannel) -> None:
        if not self._send(channel.datagram()):
            self._unsent = True  # sent again, whole, once the socket takes it

    def _send(self, datagram: bytes) -> bool:
        try:
            sent = wire.send(self.sock, datagram)
        except OSError:
            return False
        if not sent and not self._unsent:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().add_writer(self.sock, self._writable)
        return sent

    def _writable(self) -> None:
        asyncio.get_running_loop().remove_writer(self.sock)
        self._unsent = False
        for channel in self._channels.values():
            self.sync(channel)
        if self._synced_pending and not self._unsent:  # only once every input has gone
            self._synced_pending = not self._send(wire.encode("synced"))

    def _heartbeat(self) -> None:
        """On a thread of its own: the safety process hears from a busy event loop too."""
        send, beat, flags = self.sock.send, wire.HEARTBEAT, socket.MSG_DONTWAIT
        while not self._stop_beat.is_set():
            time.sleep(wire.HEARTBEAT_S)
            try:
                send(beat, flags)
            except BlockingIOError:
                pass  # the safety process is behind: the next beat will do
            except OSError:
                return

    def set_logging(self, level: str, modules: Mapping[str, str]) -> None:
        self._send(wire.encode("logging", level=level, modules=dict(modules)))

    def push_status(self) -> None:
        """Send the rig's OCPP fields (connector status, transaction, link) if they changed."""
        report = self._report
        if report is None or self.reason is not None:
            return
        evses = {str(evse_id): report.ocpp_fields(evse_id) for evse_id in self._channels}
        message = {"evses": evses, "ocpp": report.link()}
        if message != self._status_sent and self._send(wire.encode("status", **message)):
            self._status_sent = message

    async def _send_status(self) -> None:
        while True:
            self.push_status()
            await asyncio.sleep(STATUS_S)

    async def read_meter(self, evse_id: int) -> MeterReading:
        request = next(self._ids)
        future: asyncio.Future[MeterReading] = asyncio.get_running_loop().create_future()
        self._readings[request] = future
        try:
            if not self._send(wire.encode("read", id=request, evse=evse_id)):
                raise DriverError(f"simulated meter of EVSE {evse_id}: the safety process is not answering")
            return await future
        finally:
            self._readings.pop(request, None)

    # -- receiving -------------------------------------------------------------------------

    def _readable(self) -> None:
        datagrams, closed = wire.drain(self.sock)
        if datagrams:
            self.heard_at = time.monotonic()
        for datagram in datagrams:
            wire.dispatch(datagram, self._handle, log)
        if closed:
            self._ended()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "view":
            channel = self._channels[message["evse"]]
            view = EvseView.from_wire(message["view"])
            locked, engaged = message["lock"]
            channel.lock_state = (bool(locked), bool(engaged))
            channel.contactor_test = ContactorTest(message["test"])
            channel.ticks = int(message["ticks"])
            departures = int(message["departures"])
            if departures != channel.departures:
                channel.departures = departures  # before the station moves: its permit is for now
                if view.cp is not CpState.A and channel.view is not None:
                    # The EV left and another came while the views in between were lost
                    # (a long stop): the station must end the session it knew first.
                    self._seen(channel, replace(view, cp=CpState.A, contactor_closed=False))
                self._seen(channel, view)
                self.sync(channel)  # the permit, for this connection
            elif view != channel.view:
                self._seen(channel, view)
        elif kind == "reading":
            future = self._readings.get(message["id"])
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(DriverError(message["error"]))
                else:
                    future.set_result(
                        MeterReading(
                            float(message["energy_wh"]),
                            float(message["power_w"]),
                            tuple(map(float, message["current_a"])),
                            tuple(map(float, message["voltage_v"])),
                        )
                    )
        elif kind == "swipe":
            self.swipes.put_nowait(str(message["id"]))
        elif kind == "hb":
            pass  # heard: that is all it says
        elif kind == "resync":  # after a silence: every EVSE's current inputs, then "synced"
            self._synced_pending = True
            for channel in self._channels.values():
                self.sync(channel)
            if not self._unsent:
                self._synced_pending = not self._send(wire.encode("synced"))
        elif kind == "ready":
            self.ready.set()
        elif kind == "safe":
            self.safe.set()
        elif kind == "failed":
            self._failed(str(message["reason"]))

    def _seen(self, channel: RemoteChannel, view: EvseView) -> None:
        channel.view = view
        if self._publish is not None:
            self._publish(channel.evse_id, view)

    def _ended(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.sock)
        self.ended.set()
        status = self.child.exit_status(0.05)  # a moment for the exit status, the only clue
        self._failed(f"the safety process {self.child.pid} has ended (exit status {status})")

    def _failed(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        self._stop_beat.set()
        for future in self._readings.values():
            if not future.done():
                future.set_exception(DriverError(reason))
        if self.ready.is_set():
            log.critical("%s: every EVSE reported Faulted", reason)
        for evse_id, channel in self._channels.items():
            last = channel.view
            faults = frozenset({Fault.HARDWARE}) | (last.faults if last else frozenset())
            view = EvseView(last.cp if last else CpState.A, PilotMode.STEADY, 100.0, 0.0, False, faults)
            channel.view = view
            if self._publish is not None:
                self._publish(evse_id, view)
