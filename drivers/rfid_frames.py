"""Sans-I/O parsers for serial RFID readers: bytes in, ids and events out.

Nothing here touches a port or an event loop. Each parser buffers what it is fed,
returns whatever complete frames it now holds, and resynchronises after garbage,
bad checksums and truncated frames. Counters: ``frames`` (good frames decoded),
``dropped`` (frame candidates rejected) and ``skipped`` (garbage bytes between frames).

RDM6300: ``02``, 10 ASCII hex (2 version + 8 tag), 2 ASCII hex checksum (XOR of the
5 data bytes), ``03``; the id is the 10 hex characters, uppercase.

PN532 over HSU: ``00 00 FF LEN LCS TFI data DCS 00`` with (LEN + LCS) & 0xFF == 0 and
(TFI + sum(data) + DCS) & 0xFF == 0; TFI D4 host to PN532, D5 replies; ACK is
``00 00 FF 00 FF 00``; an application error is the frame with TFI 7F alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

STX, ETX = 0x02, 0x03
RDM6300_FRAME_LEN = 14
_HEX12 = re.compile(rb"[0-9A-Fa-f]{12}")

TFI_HOST, TFI_PN532, TFI_ERROR = 0xD4, 0xD5, 0x7F
PREAMBLE = b"\x00\x00\xff"
PN532_ACK = b"\x00\x00\xff\x00\xff\x00"
# 0x55 0x55 wakes the PN532 from power-down on HSU; the zeros give its oscillator time.
PN532_WAKEUP = b"\x55\x55" + bytes(14)
SAM_CONFIGURATION = 0x14
IN_LIST_PASSIVE_TARGET = 0x4A
UID_LENGTHS = (4, 7, 10)


# -- RDM6300 ------------------------------------------------------------------------------


def rdm6300_frame(card_id: str) -> bytes:
    """The frame an RDM6300 sends for ``card_id`` (10 hex characters)."""
    data = bytes.fromhex(card_id)
    if len(data) != 5:
        raise ValueError(f"an RDM6300 id is 10 hex characters, got {card_id!r}")
    checksum = data[0] ^ data[1] ^ data[2] ^ data[3] ^ data[4]
    return bytes([STX]) + f"{data.hex()}{checksum:02x}".upper().encode() + bytes([ETX])


def _rdm6300_id(frame: bytes) -> str | None:
    if frame[-1] != ETX or not _HEX12.fullmatch(frame, 1, 13):
        return None
    data = bytes.fromhex(frame[1:13].decode())
    if data[0] ^ data[1] ^ data[2] ^ data[3] ^ data[4] != data[5]:
        return None
    return frame[1:11].decode().upper()


class Rdm6300Parser:
    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames = self.dropped = self.skipped = 0

    def feed(self, data: bytes) -> list[str]:
        """The ids of every complete, valid frame now buffered, in order."""
        self._buf += data
        ids: list[str] = []
        while True:
            start = self._buf.find(STX)
            self._skip(len(self._buf) if start < 0 else start)
            if len(self._buf) < RDM6300_FRAME_LEN:
                return ids
            card_id = _rdm6300_id(bytes(self._buf[:RDM6300_FRAME_LEN]))
            if card_id is None:
                # A false start: the real frame may begin anywhere after this STX.
                self.dropped += 1
                del self._buf[:1]
                continue
            del self._buf[:RDM6300_FRAME_LEN]
            self.frames += 1
            ids.append(card_id)

    def _skip(self, n: int) -> None:
        self.skipped += n
        del self._buf[:n]


# -- PN532 --------------------------------------------------------------------------------


def pn532_frame(data: bytes, tfi: int = TFI_HOST) -> bytes:
    """A normal information frame carrying ``data`` (command code first) after ``tfi``."""
    body = bytes([tfi]) + data
    if len(body) > 255:
        raise ValueError("a normal PN532 frame carries at most 254 data bytes")
    return PREAMBLE + bytes([len(body), -len(body) & 0xFF]) + body + bytes([-sum(body) & 0xFF, 0x00])


def pn532_command(code: int, params: bytes = b"") -> bytes:
    return pn532_frame(bytes([code]) + params)


# Normal mode, virtual card timeout 20 x 50 ms, use the IRQ pin.
SAM_CONFIGURATION_FRAME = pn532_command(SAM_CONFIGURATION, b"\x01\x14\x01")
# At most one target, 106 kbps type A (ISO/IEC 14443 A).
IN_LIST_PASSIVE_TARGET_FRAME = pn532_command(IN_LIST_PASSIVE_TARGET, b"\x01\x00")


@dataclass(frozen=True, slots=True)
class Ack:
    pass


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """The PN532 rejected the last frame (syntax error at application level)."""


@dataclass(frozen=True, slots=True)
class Response:
    code: int  # the command code + 1 in a reply, the command code in a host frame
    data: bytes


@dataclass(frozen=True, slots=True)
class Target:
    """An InListPassiveTarget answer: the first target's UID, or None when none was found."""

    uid: str | None


Pn532Event = Ack | ErrorFrame | Response | Target


class _Incomplete(Exception):
    pass


class Pn532Parser:
    """Frames with TFI ``tfi``: D5 (default) parses the PN532's replies, D4 a host's commands."""

    def __init__(self, tfi: int = TFI_PN532) -> None:
        self._tfi = tfi
        self._buf = bytearray()
        self.frames = self.dropped = self.skipped = 0

    def feed(self, data: bytes) -> list[Pn532Event]:
        self._buf += data
        events: list[Pn532Event] = []
        while True:
            start = self._buf.find(PREAMBLE)
            if start < 0:
                # Keep what could be the start of a preamble split across feeds.
                keep = 2 if self._buf.endswith(b"\x00\x00") else 1 if self._buf.endswith(b"\x00") else 0
                self._skip(len(self._buf) - keep)
                return events
            self._skip(start)
            try:
                event, size = self._frame()
            except _Incomplete:
                return events
            if size == 0:
                self.dropped += 1
                del self._buf[:1]  # a false start: resynchronise from the next byte
                continue
            del self._buf[:size]
            if event is None:  # well framed but meaningless, e.g. a bad UID length
                self.dropped += 1
            else:
                self.frames += 1
                events.append(event)

    def _frame(self) -> tuple[Pn532Event | None, int]:
        """The event at the start of the buffer and its size; size 0 for a bad frame."""
        buf = self._buf
        _need(buf, 5)
        length, lcs = buf[3], buf[4]
        if length == 0 and lcs == 0xFF:
            _need(buf, 6)
            return (Ack(), 6) if buf[5] == 0 else (None, 0)
        if length == 0 or (length + lcs) & 0xFF:
            return None, 0
        _need(buf, 6)
        if buf[5] not in (self._tfi, TFI_ERROR):
            return None, 0
        size = 5 + length + 2
        _need(buf, size)
        body = bytes(buf[5 : 5 + length])
        if (sum(body) + buf[5 + length]) & 0xFF or buf[size - 1] != 0:
            return None, 0
        if body[0] == TFI_ERROR:
            return (ErrorFrame(), size) if length == 1 else (None, 0)
        if length < 2:
            return None, 0
        response = Response(body[1], body[2:])
        if self._tfi == TFI_PN532 and response.code == IN_LIST_PASSIVE_TARGET + 1:
            return _target(response.data), size
        return response, size

    def _skip(self, n: int) -> None:
        self.skipped += n
        del self._buf[:n]


def _need(buf: bytearray, n: int) -> None:
    if len(buf) < n:
        raise _Incomplete


def _target(data: bytes) -> Target | None:
    """Parse ``NbTg [Tg SENS_RES(2) SEL_RES UIDlen UID [ATS]]``; None if malformed."""
    if data[:1] == b"\x00":
        return Target(None)
    if len(data) < 6 or data[5] not in UID_LENGTHS or len(data) < 6 + data[5]:
        return None
    return Target(data[6 : 6 + data[5]].hex().upper())


# -- debouncing ---------------------------------------------------------------------------


class Debouncer:
    """Report an id once while it keeps being seen; again once unseen for ``hold_off_s``."""

    def __init__(self, hold_off_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_off_s = hold_off_s
        self._clock = clock
        self._last_seen: dict[str, float] = {}

    def accept(self, card_id: str) -> bool:
        """Note a sighting of ``card_id``; True when it should be reported."""
        now = self._clock()
        self._last_seen = {k: t for k, t in self._last_seen.items() if now - t < self.hold_off_s}
        fresh = card_id not in self._last_seen
        self._last_seen[card_id] = now
        return fresh
