"""Serial RFID readers: the sans-I/O parsers, then the driver on a real pty."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import time
import tty
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import rfid_serial
from drivers.base import DriverError
from drivers.rfid_frames import (
    IN_LIST_PASSIVE_TARGET_FRAME,
    PN532_ACK,
    PN532_WAKEUP,
    PREAMBLE,
    SAM_CONFIGURATION_FRAME,
    TFI_HOST,
    TFI_PN532,
    Ack,
    Debouncer,
    ErrorFrame,
    Pn532Event,
    Pn532Parser,
    Rdm6300Parser,
    Response,
    Target,
    pn532_frame,
    rdm6300_frame,
)
from drivers.rfid_serial import SerialRfid, build_rfid

# 1A ^ 00 ^ 77 ^ A5 ^ C5 = 0D
RDM_FRAME = b"\x021A0077A5C50D\x03"
RDM_ID = "1A0077A5C5"
UID4, UID7, UID10 = bytes.fromhex("DEADBEEF"), bytes.fromhex("04A22B1A5C3F80"), bytes(range(1, 11))


def feed_all(parser: Rdm6300Parser, chunks: list[bytes]) -> list[str]:
    return [card for chunk in chunks for card in parser.feed(chunk)]


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    return [stream[a:b] for a, b in itertools.pairwise([0, *sorted(cuts), len(stream)])]


def target_frame(uid: bytes | None, ats: bytes = b"") -> bytes:
    if uid is None:
        return pn532_frame(b"\x4b\x00", TFI_PN532)
    return pn532_frame(b"\x4b\x01\x01\x00\x44\x00" + bytes([len(uid)]) + uid + ats, TFI_PN532)


def pn532_feed(parser: Pn532Parser, chunks: list[bytes]) -> list[Pn532Event]:
    return [event for chunk in chunks for event in parser.feed(chunk)]


# -- RDM6300 parser -----------------------------------------------------------------------


def test_rdm6300_builder_matches_a_known_frame() -> None:
    assert rdm6300_frame(RDM_ID) == RDM_FRAME
    with pytest.raises(ValueError):
        rdm6300_frame("1A0077")


def test_rdm6300_clean_frames() -> None:
    parser = Rdm6300Parser()
    assert parser.feed(RDM_FRAME + rdm6300_frame("0F00B2C3D4")) == [RDM_ID, "0F00B2C3D4"]
    assert (parser.frames, parser.dropped, parser.skipped) == (2, 0, 0)


def test_rdm6300_lowercase_hex_is_reported_uppercase() -> None:
    assert Rdm6300Parser().feed(RDM_FRAME.lower()) == [RDM_ID]


def test_rdm6300_frames_split_at_every_byte_position() -> None:
    stream = RDM_FRAME + rdm6300_frame("0F00B2C3D4")
    for cut in range(len(stream) + 1):
        assert feed_all(Rdm6300Parser(), [stream[:cut], stream[cut:]]) == [RDM_ID, "0F00B2C3D4"], cut
    assert feed_all(Rdm6300Parser(), [bytes([b]) for b in stream]) == [RDM_ID, "0F00B2C3D4"]


def test_rdm6300_resynchronises_after_garbage() -> None:
    parser = Rdm6300Parser()
    garbage = b"\xff\x0312\x02AB\x02" + b"\x020123456789"  # stray STX and ETX, a truncated frame
    ids = parser.feed(garbage + RDM_FRAME + b"\x00\x02\x03" + rdm6300_frame("0F00B2C3D4") + b"\x02AB")
    assert ids == [RDM_ID, "0F00B2C3D4"]
    assert parser.frames == 2 and parser.dropped >= 3


def test_rdm6300_bad_checksum_is_dropped_and_counted() -> None:
    parser = Rdm6300Parser()
    assert parser.feed(b"\x021A0077A5C50E\x03" + RDM_FRAME) == [RDM_ID]
    assert (parser.frames, parser.dropped) == (1, 1)


@pytest.mark.parametrize("bad", [b"\x021A0077A5G50D\x03", b"\x021A 077A5C50D\x03", b"\x021A0077A5C50D\x04"])
def test_rdm6300_non_hex_or_unterminated_frames_are_dropped(bad: bytes) -> None:
    parser = Rdm6300Parser()
    assert parser.feed(bad + RDM_FRAME) == [RDM_ID]
    assert parser.dropped == 1


_RDM_LIKE = re.compile(rb"\x02[0-9A-Fa-f]{12}\x03")
_HEX10 = st.text("0123456789ABCDEF", min_size=10, max_size=10)


@given(st.lists(st.tuples(st.binary(max_size=40), _HEX10), max_size=6), st.binary(max_size=30), st.data())
def test_rdm6300_garbage_never_yields_a_wrong_id(
    items: list[tuple[bytes, str]], tail: bytes, data: st.DataObject
) -> None:
    stream = b"".join(garbage + rdm6300_frame(card) for garbage, card in items) + tail
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    out = feed_all(Rdm6300Parser(), split(stream, cuts))
    garbage_frames = [m.group() for g in [tail, *(g for g, _ in items)] for m in _RDM_LIKE.finditer(g)]
    if not garbage_frames:  # garbage that holds a whole frame is a frame
        assert out == [card for _, card in items]
    else:
        assert set(out) <= {card for _, card in items} | {f[1:11].decode().upper() for f in garbage_frames}


# -- PN532 parser -------------------------------------------------------------------------


def test_pn532_host_frames_match_the_datasheet() -> None:
    assert bytes.fromhex("0000FF05FBD414011401 0200") == SAM_CONFIGURATION_FRAME
    assert bytes.fromhex("0000FF04FCD44A0100E100") == IN_LIST_PASSIVE_TARGET_FRAME
    assert PN532_WAKEUP.startswith(b"\x55\x55") and set(PN532_WAKEUP[2:]) == {0}


def test_pn532_ack_and_responses() -> None:
    parser = Pn532Parser()
    stream = PN532_ACK + pn532_frame(b"\x15", TFI_PN532) + PN532_ACK + target_frame(None)
    assert parser.feed(stream) == [Ack(), Response(0x15, b""), Ack(), Target(None)]
    assert (parser.frames, parser.dropped, parser.skipped) == (4, 0, 0)


@pytest.mark.parametrize("uid", [UID4, UID7, UID10])
def test_pn532_target_uids(uid: bytes) -> None:
    parser = Pn532Parser()
    assert parser.feed(PN532_ACK + target_frame(uid)) == [Ack(), Target(uid.hex().upper())]
    # an ISO 14443-4 card appends its ATS after the UID
    assert parser.feed(target_frame(uid, ats=b"\x05\x78\x80\x70\x02")) == [Target(uid.hex().upper())]


def test_pn532_known_target_frame() -> None:
    frame = bytes.fromhex("0000FF0CF4D54B010100040804DEADBEEF9600")
    assert Pn532Parser().feed(frame) == [Target("DEADBEEF")]


def test_pn532_frames_split_at_every_byte_position() -> None:
    stream = b"\x00" + PN532_ACK + target_frame(UID7) + PN532_ACK + target_frame(UID10)
    want = [Ack(), Target(UID7.hex().upper()), Ack(), Target(UID10.hex().upper())]
    for cut in range(len(stream) + 1):
        assert pn532_feed(Pn532Parser(), [stream[:cut], stream[cut:]]) == want, cut
    assert pn532_feed(Pn532Parser(), [bytes([b]) for b in stream]) == want


def test_pn532_bad_checksums_and_truncation_are_dropped_and_resynchronised() -> None:
    good = target_frame(UID4)
    bad_lcs = good[:4] + bytes([good[4] ^ 1]) + good[5:]
    bad_dcs = good[:-2] + bytes([good[-2] ^ 1]) + good[-1:]
    no_postamble = good[:-1] + b"\x55"
    truncated = good[:9]
    parser = Pn532Parser()
    events = parser.feed(b"\x55\x55\x00\xff" + bad_lcs + bad_dcs + no_postamble + truncated + good)
    assert events == [Target("DEADBEEF")]
    assert parser.frames == 1 and parser.dropped >= 4


def test_pn532_malformed_target_answers_are_dropped() -> None:
    parser = Pn532Parser()
    bad_length = pn532_frame(b"\x4b\x01\x01\x00\x04\x08\x05" + bytes(5), TFI_PN532)
    short = pn532_frame(b"\x4b\x01\x01\x00\x04\x08\x07" + bytes(4), TFI_PN532)
    assert parser.feed(bad_length + short + target_frame(UID4)) == [Target("DEADBEEF")]
    assert (parser.frames, parser.dropped) == (1, 2)


def test_pn532_error_frame_and_foreign_tfi() -> None:
    parser = Pn532Parser()
    host_frame = IN_LIST_PASSIVE_TARGET_FRAME  # our own command, D4, is not a reply
    assert parser.feed(host_frame + bytes.fromhex("0000FF01FF7F8100")) == [ErrorFrame()]
    assert parser.dropped == 1


def test_pn532_host_side_parser_reads_wakeup_and_commands() -> None:
    parser = Pn532Parser(TFI_HOST)
    events = parser.feed(PN532_WAKEUP + SAM_CONFIGURATION_FRAME + IN_LIST_PASSIVE_TARGET_FRAME)
    assert events == [Response(0x14, b"\x01\x14\x01"), Response(0x4A, b"\x01\x00")]


_UIDS = st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@given(
    st.lists(st.tuples(st.binary(max_size=30), st.none() | _UIDS), max_size=6),
    st.binary(max_size=20),
    st.data(),
)
def test_pn532_garbage_never_yields_a_wrong_uid(
    items: list[tuple[bytes, bytes | None]], tail: bytes, data: st.DataObject
) -> None:
    stream = b"".join(garbage + PN532_ACK + target_frame(uid) for garbage, uid in items) + tail
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    events = pn532_feed(Pn532Parser(), split(stream, cuts))
    out = [e for e in events if isinstance(e, Target)]
    planted = [Target(uid.hex().upper() if uid else None) for _, uid in items]
    if not any(PREAMBLE in garbage for garbage, _ in items):
        assert out == planted
    else:  # a fake header in the garbage may hide a frame, never invent one
        remaining = iter(planted)
        assert all(target in remaining for target in out)


# -- debouncing ---------------------------------------------------------------------------


def test_debouncer_reports_a_held_card_once_and_a_new_presentation_again() -> None:
    now = [0.0]
    debounce = Debouncer(2.0, clock=lambda: now[0])
    seen = []
    for t in [0.0, 0.1, 0.5, 1.9, 3.8, 5.7]:  # held: repeats never 2 s apart
        now[0] = t
        seen.append(debounce.accept("AA"))
    assert seen == [True, False, False, False, False, False]
    now[0] = 5.8
    assert debounce.accept("BB")  # another card at once
    now[0] = 7.7
    assert debounce.accept("AA")  # presented again 2 s after its last sighting
    now[0] = 7.75
    assert not debounce.accept("AA") and not debounce.accept("BB")


# -- the driver on a pty ------------------------------------------------------------------


class FakePort:
    """A pty standing in for a reader; the driver opens ``path``, a symlink to its slave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Holding the slave open keeps the master from reporting a hang-up between the
        # driver's attempts to open it.
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        path.symlink_to(os.ttyname(self.slave))

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def vanish(self) -> None:
        """Like pulling the USB adapter: the device and its path go away."""
        self.path.unlink()
        os.close(self.master)
        os.close(self.slave)


def run(coro: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def next_token(tokens: asyncio.Queue[str], timeout: float = 3.0) -> str:
    return await asyncio.wait_for(tokens.get(), timeout)


@contextlib.asynccontextmanager
async def running(driver: SerialRfid) -> AsyncIterator[tuple[asyncio.Queue[str], asyncio.Task[None]]]:
    tokens: asyncio.Queue[str] = asyncio.Queue()

    async def consume() -> None:
        async for token in driver.tokens():
            tokens.put_nowait(token)

    task = asyncio.create_task(consume())
    try:
        yield tokens, task
    finally:
        await driver.close()
        await asyncio.wait_for(task, 3)  # close() ends the iterator


def test_build_rfid() -> None:
    reader = build_rfid("pn532", {"port": "/dev/ttyUSB0", "baudrate": 115200})
    assert (reader.protocol, reader.port, reader.baudrate) == ("pn532", "/dev/ttyUSB0", 115200)
    assert build_rfid("rdm6300", {}).baudrate == 9600
    with pytest.raises(DriverError):
        build_rfid("sim", {})


def test_rdm6300_over_a_pty(tmp_path: Path) -> None:
    port = FakePort(tmp_path / "ttyRFID")

    async def scenario() -> None:
        driver = SerialRfid("rdm6300", str(port.path), 9600, hold_off_s=0.5)
        async with running(driver) as (tokens, _):
            await wait_until(lambda: driver.connected)
            port.write(RDM_FRAME)
            assert await next_token(tokens) == RDM_ID
            frame = rdm6300_frame("0F00B2C3D4")
            for piece in (frame[:3], frame[3:9], frame[9:]):
                port.write(piece)
                await asyncio.sleep(0.05)
            assert await next_token(tokens) == "0F00B2C3D4"
            port.write(b"\xff\x02\x0312" + b"\x021A0077A5C50E\x03" + rdm6300_frame("2200000001"))
            assert await next_token(tokens) == "2200000001"
            for _ in range(5):  # a held card repeats its frame
                port.write(rdm6300_frame("2200000001"))
                await asyncio.sleep(0.02)
            cpu = time.process_time()
            await asyncio.sleep(0.6)
            assert time.process_time() - cpu < 0.1  # idle: no busy polling
            assert tokens.empty()
            port.write(rdm6300_frame("2200000001"))  # unseen for the hold-off: presented again
            assert await next_token(tokens) == "2200000001"

    try:
        run(scenario())
    finally:
        port.vanish()


def test_the_port_vanishing_and_coming_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ttyRFID"
    ports: list[FakePort] = []
    caplog.set_level(logging.INFO, logger="drivers.rfid_serial")

    def warnings(text: str) -> int:
        return sum(text in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)

    async def scenario() -> None:
        driver = SerialRfid("rdm6300", str(path), 9600, reopen_s=0.1)
        async with running(driver) as (tokens, task):
            await asyncio.sleep(0.35)  # not plugged in yet: several attempts
            assert warnings("cannot open") == 1
            ports.append(FakePort(path))
            await wait_until(lambda: driver.connected)
            ports[-1].write(rdm6300_frame("0A0B0C0D0E"))
            assert await next_token(tokens) == "0A0B0C0D0E"

            ports.pop().vanish()
            await wait_until(lambda: not driver.connected)
            await asyncio.sleep(0.35)
            assert not task.done()
            assert warnings("lost") == 1 and warnings("cannot open") == 1  # once per outage

            ports.append(FakePort(path))
            await wait_until(lambda: driver.connected)
            assert warnings("is back") == 2
            ports[-1].write(rdm6300_frame("0A0B0C0D0F"))
            assert await next_token(tokens) == "0A0B0C0D0F"

    try:
        run(scenario())
    finally:
        for port in ports:
            port.vanish()


class FakePn532:
    """The reader's side of the pty: answers the driver's commands as a PN532 would."""

    def __init__(self, port: FakePort) -> None:
        self.port = port
        self.parser = Pn532Parser(TFI_HOST)
        self.received = bytearray()
        self.commands: list[Response] = []
        self.aborts = 0
        self.mute = False  # as if unpowered
        self.card: bytes | None = None
        self.answer_empty = False  # NbTg = 0 at once, as with finite MxRtyPassiveActivation
        self.polling = False
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(port.master, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.port.master, 4096)
        except OSError:  # the driver closed the port
            self.loop.remove_reader(self.port.master)
            return
        self.received += data
        for event in self.parser.feed(data):
            if self.mute:
                continue
            if isinstance(event, Ack):
                self.aborts += 1
                self.polling = False
            elif isinstance(event, Response):
                self.commands.append(event)
                self.port.write(PN532_ACK)
                if event.code == 0x14:
                    self.port.write(pn532_frame(b"\x15", TFI_PN532))
                elif event.code == 0x4A:
                    self.polling = True
                    self.answer()

    def answer(self) -> None:
        if self.polling and (self.card or self.answer_empty):
            self.port.write(target_frame(self.card))
            self.polling = False

    def present(self, card: bytes | None) -> None:
        self.card = card
        self.answer()  # a poll waiting for a card answers as soon as one is in the field

    def close(self) -> None:
        self.loop.remove_reader(self.port.master)


def test_pn532_over_a_pty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rfid_serial, "INIT_TIMEOUT_S", 0.1)
    monkeypatch.setattr(rfid_serial, "CARD_WAIT_S", 0.3)
    monkeypatch.setattr(rfid_serial, "POLL_INTERVAL_S", 0.05)
    caplog.set_level(logging.INFO, logger="drivers.rfid_serial")
    path = tmp_path / "ttyPN532"
    ports = [FakePort(path)]

    async def scenario() -> None:
        driver = SerialRfid("pn532", str(path), 115200, reopen_s=0.1)
        reader = FakePn532(ports[-1])
        reader.mute = True
        try:
            async with running(driver) as (tokens, _):
                await asyncio.sleep(0.5)  # several wake-ups unanswered
                assert reader.received.count(PN532_WAKEUP + SAM_CONFIGURATION_FRAME) >= 2
                assert sum("does not answer" in r.getMessage() for r in caplog.records) == 1
                reader.mute = False
                await wait_until(lambda: any(c.code == 0x4A for c in reader.commands))
                assert any("answers again" in r.getMessage() for r in caplog.records)

                reader.present(UID4)
                assert await next_token(tokens) == "DEADBEEF"
                polls = len(reader.commands)
                await wait_until(lambda: len(reader.commands) >= polls + 3)  # held: polled, not reported
                reader.present(UID7)
                assert await next_token(tokens) == UID7.hex().upper()

                reader.present(None)  # no card: the poll waits until the driver aborts it
                await wait_until(lambda: reader.aborts >= 1)
                reader.answer_empty = True  # a PN532 with finite retries answers NbTg = 0
                polls = len(reader.commands)
                await wait_until(lambda: len(reader.commands) >= polls + 3)
                reader.present(UID10)
                assert await next_token(tokens) == UID10.hex().upper()
                assert tokens.empty()
                reader.close()
                assert reader.commands[0] == Response(0x14, b"\x01\x14\x01")
                assert set(reader.commands[1:]) == {Response(0x4A, b"\x01\x00")}
                assert reader.parser.dropped == 0

                ports.pop().vanish()  # unplugged while polling
                await wait_until(lambda: not driver.connected)
                ports.append(FakePort(path))
                reader = FakePn532(ports[-1])
                reader.present(bytes.fromhex("CAFEBABE"))
                assert await next_token(tokens) == "CAFEBABE"  # initialised again, polling again
                assert reader.commands[0].code == 0x14
        finally:
            reader.close()

    try:
        run(scenario())
    finally:
        for port in ports:
            port.vanish()
