"""What the OCPP 1.6 and 2.0.1 adapters share: boot state, clock, heartbeat, outbox delivery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from controller.link import CallFailed, Link, NotConnected, Reply
from controller.ocppj import Call, RpcError
from controller.storage import OutboxEntry, StorageError, parse_timestamp

if TYPE_CHECKING:
    from controller.daemon import Daemon

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0
BOOT_RETRY_DEFAULT_S = 60
CLOCK_SKEW_S = 1.0  # adopt the CSMS's time when ours differs by more than this


class Adapter:
    OUTBOX_KINDS: tuple[str, ...] = ()
    UNKNOWN_ACTION = "not_implemented"  # the error kind for an action without a handler
    _handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Reply]]]

    def __init__(self, host: Daemon, link: Link) -> None:
        self.host = host
        self.link = link
        self.accepted = False  # BootNotification accepted on this connection
        self.registration = "none"
        self._session: list[asyncio.Task[Any]] = []
        self._outbox_wake = asyncio.Event()
        self._delivered: set[int] = set()  # answered, removal from the outbox not yet committed
        self._heartbeat_changed = asyncio.Event()

    @property
    def online(self) -> bool:
        return self.link.connected and self.accepted

    def _closed(self) -> None:
        self.accepted = False
        for task in self._session:
            task.cancel()
        self._session = []

    async def _handle(self, call: Call) -> Reply:
        if not self.accepted and self.registration == "Rejected":
            raise RpcError("security", "the CSMS rejected our BootNotification")
        handler = self._handlers.get(call.action)
        if handler is None:
            raise RpcError(self.UNKNOWN_ACTION, f"{call.action} is not supported")
        log.info(
            "%s from the CSMS",
            call.action,
            extra={"ocpp_action": call.action, "ocpp_message_id": call.unique_id},
        )
        return await handler(call.payload)

    # -- clock and heartbeat -----------------------------------------------------------

    def heartbeat_interval(self) -> int:
        raise NotImplementedError

    def _adopt_clock(self, text: str) -> None:
        try:
            theirs = parse_timestamp(text)
        except ValueError:
            log.warning("the CSMS sent an unreadable currentTime %r; clock unchanged", text)
            return
        skew = (theirs - self.host.now()).total_seconds()
        if abs(skew) > CLOCK_SKEW_S:
            self.host.set_clock(timedelta(seconds=skew))
            log.info("clock set from the CSMS (%+.1f s)", skew)

    async def _heartbeat(self) -> None:
        while True:
            interval = self.heartbeat_interval() or 86400
            self._heartbeat_changed.clear()
            try:
                await asyncio.wait_for(self._heartbeat_changed.wait(), interval)
            except TimeoutError:
                await self.heartbeat()

    async def heartbeat(self) -> None:
        with contextlib.suppress(NotConnected, CallFailed, TimeoutError):
            reply = await self.link.call("Heartbeat", {}, CALL_TIMEOUT_S)
            self._adopt_clock(reply["currentTime"])

    # -- outbox ------------------------------------------------------------------------

    def outbox_changed(self) -> None:
        self._outbox_wake.set()

    async def _deliver(self, entry: OutboxEntry) -> bool:
        raise NotImplementedError

    async def _deliver_outbox(self) -> None:
        """Send the outbox in order while connected; the session's end cancels this."""
        database = self.host.database
        while True:
            try:
                entries = await database.run(database.storage.outbox, 50, self.OUTBOX_KINDS)
                entries = [e for e in entries if e.id not in self._delivered]
                if not entries:
                    self._outbox_wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._outbox_wake.wait(), 5.0)
                    continue
                for entry in entries:
                    if not await self._deliver(entry):
                        return  # the connection is gone; the next session starts over
            except StorageError as exc:
                # A full or locked disk: nothing is lost, the outbox is read again.
                log.error("transaction messages held back: %s", exc)
                await asyncio.sleep(5.0)

    async def drain(self, timeout: float) -> None:
        """Give queued transaction messages up to ``timeout`` s to reach the CSMS (shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        database = self.host.database
        while self.online and loop.time() < deadline:
            try:
                if not await database.run(database.storage.outbox_size) and not self._delivered:
                    return
            except StorageError:
                return
            await asyncio.sleep(0.05)

    def _committed(self, entry_id: int) -> None:
        self._delivered.discard(entry_id)
        self._outbox_wake.set()
