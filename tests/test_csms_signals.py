"""``python -m hil.csms`` ends promptly on SIGINT or SIGTERM, whenever it comes: right after the
spawn, during start-up, once listening, with stations connected; a second SIGINT ends it at once.

Each test runs the command line as a real subprocess (``tests/csms_process.py`` kills it if a
test fails). A CSMS started in the background by a non-interactive shell inherits SIGINT
ignored: it used to ignore every SIGINT and run on forever.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from urllib.parse import urlsplit

import pytest
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from hil.csms.stopping import EXIT_DEADLINE_S
from tests.csms_process import Sigint, banner_urls, csms_process, ended, handles

# From the signal to the end of the process: the watchdog's deadline plus slack for a loaded machine.
WITHIN_S = EXIT_DEADLINE_S + 3

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals, /proc")

SIGNALS = [signal.SIGINT, signal.SIGTERM]


def stalled_station(url: str, station_id: str) -> socket.socket:
    """A station that opens its websocket and then reads nothing, so never answers a close."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path}/{station_id} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, "the CSMS closed the connection during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101 "), response
    return sock


def wait_close_frame(sock: socket.socket) -> None:
    """Read until the CSMS's close frame (opcode 8, unmasked from a server) arrives."""
    while True:
        frame = sock.recv(2)
        assert frame, "the connection ended without a close frame"
        if frame[0] == 0x88:
            return


def wait_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"the CSMS ended without printing {text!r}")


@pytest.fixture
def listening() -> Iterator[subprocess.Popen[str]]:
    with csms_process("--port", "0") as proc:
        yield proc


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_right_after_spawn(sig: signal.Signals) -> None:
    # It lands while the interpreter starts (Python's default handling, as a terminal gives it)
    # or once the CSMS handles it: either way the process ends.
    with csms_process("--port", "0", sigint="default") as proc:
        proc.send_signal(sig)
        ended(proc, WITHIN_S)
    assert proc.returncode in (0, 1, -sig), proc.returncode


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_during_start_up_with_sigint_ignored_inherited(sig: signal.Signals) -> None:
    with csms_process("--port", "0", sigint="ignored") as proc:
        assert handles(proc.pid, *SIGNALS), "the CSMS never took SIGINT and SIGTERM over"
        proc.send_signal(sig)  # most likely still importing
        _, err = ended(proc, WITHIN_S)
    assert proc.returncode == 0, err


@pytest.mark.parametrize("sigint", ["inherited", "default", "ignored"])
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_once_listening(sig: signal.Signals, sigint: Sigint) -> None:
    with csms_process("--port", "0", sigint=sigint) as proc:
        banner_urls(proc)
        proc.send_signal(sig)
        out, err = ended(proc, WITHIN_S)
    assert proc.returncode == 0, err
    assert (out, err) == ("", "")


def test_sigint_with_a_station_connected(listening: subprocess.Popen[str]) -> None:
    (url,) = banner_urls(listening)
    with connect(f"{url}/CP001", subprotocols=[Subprotocol("ocpp1.6")], open_timeout=10):
        wait_line(listening, "CP001 connected")
        listening.send_signal(signal.SIGINT)
        out, err = ended(listening, WITHIN_S)
    assert listening.returncode == 0, err
    assert "CP001 disconnected (code 1001)" in out


def test_sigint_with_a_station_that_never_closes(listening: subprocess.Popen[str]) -> None:
    (url,) = banner_urls(listening)
    with closing(stalled_station(url, "CP009")):
        wait_line(listening, "CP009 connected")
        listening.send_signal(signal.SIGINT)
        out, err = ended(listening, WITHIN_S)
    assert listening.returncode == 0, err
    assert "CP009 disconnected" in out  # cut after CLOSE_TIMEOUT_S


def test_second_sigint_ends_it_at_once(listening: subprocess.Popen[str]) -> None:
    (url,) = banner_urls(listening)
    with closing(stalled_station(url, "CP009")) as sock:
        wait_line(listening, "CP009 connected")
        listening.send_signal(signal.SIGINT)
        wait_close_frame(sock)  # the CSMS is stopping: this SIGINT is the second
        listening.send_signal(signal.SIGINT)
        _, err = ended(listening, WITHIN_S)
    assert listening.returncode == 128 + signal.SIGINT, err
    assert "SIGINT again" in err
