"""Serial RFID readers (RDM6300, PN532 over HSU) driven from the event loop.

The port is opened non-blocking and read through ``loop.add_reader`` on its file
descriptor: no thread, no polling. The parsers live in ``drivers.rfid_frames``.

A port that vanishes (USB adapter unplugged: EOF or an error on the descriptor) does
not end ``tokens()``: the loss is logged once, the port closed, and reopened every
``reopen_s`` seconds until it is back.

PN532 cadence: wake-up plus SAMConfiguration, then InListPassiveTarget (one type A
target) in a loop. A poll not ACKed within ``ACK_TIMEOUT_S`` means the reader reset or
went silent: it is initialised again, every ``reopen_s`` until it answers. The answer
is awaited for ``CARD_WAIT_S``: with its default MxRtyPassiveActivation (0xFF) the
PN532 only answers once a card is in the field, so after that wait the command is
aborted with an ACK frame and sent again; a PN532 set to finite retries answers
NbTg = 0 sooner. After each answer the next poll follows ``POLL_INTERVAL_S`` later, so
a held card is seen about five times a second and the debouncer reports it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import serial

from controller.aio import wait_event
from drivers.base import DriverError
from drivers.rfid_frames import (
    IN_LIST_PASSIVE_TARGET_FRAME,
    PN532_ACK,
    PN532_WAKEUP,
    SAM_CONFIGURATION,
    SAM_CONFIGURATION_FRAME,
    Ack,
    Debouncer,
    Pn532Event,
    Pn532Parser,
    Rdm6300Parser,
    Response,
    Target,
)

log = logging.getLogger(__name__)

PROTOCOLS = ("rdm6300", "pn532")
DEFAULT_PORT = "/dev/ttyAMA0"
DEFAULT_BAUDRATE = {"rdm6300": 9600, "pn532": 115200}
REOPEN_S = 2.0
HOLD_OFF_S = 2.0
ACK_TIMEOUT_S = 0.5
INIT_TIMEOUT_S = 1.0
CARD_WAIT_S = 1.0
POLL_INTERVAL_S = 0.2


class _Link:
    """One open port; bytes arrive through the loop's reader callback."""

    def __init__(self, port: serial.Serial) -> None:
        self._port = port
        self._fd: int = port.fileno()
        self._loop = asyncio.get_running_loop()
        self._chunks: asyncio.Queue[bytes | OSError] = asyncio.Queue()
        self._closed = False
        try:
            self._loop.add_reader(self._fd, self._on_readable)
        except BaseException:
            port.close()
            raise

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        if data:
            self._chunks.put_nowait(data)
        else:
            self._fail(OSError("end of file on the port"))

    def _fail(self, exc: OSError) -> None:
        self._loop.remove_reader(self._fd)
        self._chunks.put_nowait(exc)

    async def read(self, timeout: float | None = None) -> bytes | None:
        """The next bytes, None after ``timeout``; raises OSError once the port is gone."""
        try:
            item = await asyncio.wait_for(self._chunks.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(item, OSError):
            self._chunks.put_nowait(item)  # every later read fails the same way
            raise item
        return item

    def write(self, data: bytes) -> None:
        if self._closed:  # the descriptor's number may already belong to another file
            raise OSError("port closed")
        # Frames are a few dozen bytes: a serial driver's buffer takes them whole.
        if os.write(self._fd, data) != len(data):
            raise OSError("short write on the port")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._fail(OSError("port closed"))
            with contextlib.suppress(OSError):
                self._port.close()


class SerialRfid:
    """An RfidDriver for an RDM6300 or a PN532 (HSU) on a serial port."""

    def __init__(
        self,
        protocol: str,
        port: str,
        baudrate: int,
        *,
        reopen_s: float = REOPEN_S,
        hold_off_s: float = HOLD_OFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise DriverError(f"rfid.driver: {protocol!r} is not a serial reader; use one of {PROTOCOLS}")
        self.protocol, self.port, self.baudrate, self.reopen_s = protocol, port, baudrate, reopen_s
        self._debouncer = Debouncer(hold_off_s, clock)
        self._link: _Link | None = None
        self._closed = False
        self._closing = asyncio.Event()
        self._port_down = False  # a problem with the port was logged and not yet resolved
        self._reader_silent = False

    @property
    def connected(self) -> bool:
        """Whether the port is open now."""
        return self._link is not None

    async def tokens(self) -> AsyncIterator[str]:
        """Card ids as presented, uppercase hex, debounced; ends only after close()."""
        while (link := await self._connect()) is not None:
            self._link = link
            uids = self._rdm6300(link) if self.protocol == "rdm6300" else self._pn532(link)
            try:
                async with contextlib.aclosing(uids):
                    async for uid in uids:
                        if self._debouncer.accept(uid):
                            yield uid
            except OSError as exc:
                if not self._closed:
                    log.warning(
                        "RFID reader on %s lost (%s): check its USB cable or adapter; reopening every %g s",
                        self.port,
                        exc,
                        self.reopen_s,
                    )
                    self._port_down = True
            finally:
                self._link = None
                link.close()

    async def close(self) -> None:
        self._closed = True
        self._closing.set()
        if self._link is not None:
            self._link.close()

    async def _connect(self) -> _Link | None:
        while not self._closed:
            try:
                link = _Link(serial.Serial(self.port, self.baudrate, timeout=0))
            except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
                if not self._port_down:
                    log.warning(
                        "cannot open RFID reader port %s (%s): check that the reader is plugged in, "
                        "rfid.port, and that this user may open it (dialout group); retrying every %g s",
                        self.port,
                        exc,
                        self.reopen_s,
                    )
                    self._port_down = True
                await self._pause(self.reopen_s)
                continue
            if self._port_down:
                log.info("RFID reader port %s is back", self.port)
                self._port_down = False
            return link
        return None

    async def _pause(self, seconds: float) -> None:
        """Sleep, ending early on close()."""
        await wait_event(self._closing, seconds)

    async def _rdm6300(self, link: _Link) -> AsyncGenerator[str, None]:
        parser = Rdm6300Parser()
        while True:
            for uid in parser.feed(await link.read() or b""):
                yield uid

    async def _pn532(self, link: _Link) -> AsyncGenerator[str, None]:
        replies = _Replies(link)
        while True:
            link.write(PN532_WAKEUP + SAM_CONFIGURATION_FRAME)
            answered = await replies.wait(
                lambda e: isinstance(e, Response) and e.code == SAM_CONFIGURATION + 1, INIT_TIMEOUT_S
            )
            if answered is None:
                self._silent(True)
                await self._pause(self.reopen_s)
                continue
            self._silent(False)
            while True:
                link.write(IN_LIST_PASSIVE_TARGET_FRAME)
                acked = await replies.wait(lambda e: isinstance(e, Ack), ACK_TIMEOUT_S)
                answer = await replies.wait(lambda e: isinstance(e, Target), CARD_WAIT_S) if acked else None
                while replies.cards:  # answers to an earlier, aborted poll
                    yield replies.cards.popleft()
                if not acked:
                    break
                if isinstance(answer, Target):
                    if answer.uid is not None:
                        yield answer.uid
                    await asyncio.sleep(POLL_INTERVAL_S)
                else:
                    link.write(PN532_ACK)  # abort the poll still waiting for a card

    def _silent(self, silent: bool) -> None:
        if silent and not self._reader_silent:
            log.warning(
                "PN532 on %s does not answer: check its power and wiring (TX to RX), that it is in "
                "HSU mode, the baudrate (%d), and that no serial console uses the port",
                self.port,
                self.baudrate,
            )
        elif not silent and self._reader_silent:
            log.info("PN532 on %s answers again", self.port)
        self._reader_silent = silent


class _Replies:
    """The PN532's events, awaited one kind at a time; stray card answers kept aside."""

    def __init__(self, link: _Link) -> None:
        self._link = link
        self._parser = Pn532Parser()
        self._events: deque[Pn532Event] = deque()
        self.cards: deque[str] = deque()

    async def wait(self, match: Callable[[Pn532Event], bool], timeout: float) -> Pn532Event | None:
        """The first event that ``match``es within ``timeout``, or None."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            while self._events:
                event = self._events.popleft()
                if match(event):
                    return event
                if isinstance(event, Target) and event.uid is not None:
                    self.cards.append(event.uid)
            remaining = deadline - asyncio.get_running_loop().time()
            data = await self._link.read(remaining) if remaining > 0 else None
            if data is None:
                return None
            self._events.extend(self._parser.feed(data))


def build_rfid(driver: str, options: dict[str, Any]) -> SerialRfid:
    """The reader for the config's ``[rfid]`` table: driver "rdm6300" or "pn532"."""
    return SerialRfid(
        driver,
        str(options.get("port", DEFAULT_PORT)),
        int(options.get("baudrate", DEFAULT_BAUDRATE.get(driver, 9600))),
    )
