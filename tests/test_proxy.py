"""The fault proxy over real sockets: an echo server behind it, plain TCP clients in front."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from hil.proxy import ProxyThread


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[ProxyThread]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with ProxyThread(server.server_address[:2]) as running:  # type: ignore[arg-type]
        yield running
    server.shutdown()
    server.server_close()


def connect(proxy: ProxyThread, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def echo(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    return sock.recv(65536)


def test_relays_both_ways(proxy: ProxyThread) -> None:
    with connect(proxy) as sock:
        assert echo(sock, b"x" * 100_000)[:10] == b"x" * 10
    assert proxy.command("status")["connections"] == 1


def test_delay_holds_each_direction(proxy: ProxyThread) -> None:
    proxy.command("delay 0.2")
    with connect(proxy) as sock:
        started = time.monotonic()
        assert echo(sock) == b"ping"
        assert time.monotonic() - started >= 0.4  # there and back


def test_blackhole_holds_bytes_and_resets_connections_that_hung(proxy: ProxyThread) -> None:
    with connect(proxy) as sock:
        assert echo(sock) == b"ping"
        proxy.command("blackhole on")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            echo(sock, b"held")
        with connect(proxy) as hung:
            hung.settimeout(0.3)
            with pytest.raises(TimeoutError):
                echo(hung)
            proxy.command("blackhole off")
            hung.settimeout(2)
            with pytest.raises(ConnectionResetError):
                hung.recv(100)
        sock.settimeout(2)
        assert sock.recv(100) == b"held"  # delivered late, as TCP would retransmit it
        assert echo(sock, b"again") == b"again"


def test_down_refuses_connections_and_closes_open_ones(proxy: ProxyThread) -> None:
    with connect(proxy) as sock:
        assert echo(sock) == b"ping"  # relayed, not just accepted
        proxy.command("down on")
        assert sock.recv(10) == b""
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)
    proxy.command("down off")
    with connect(proxy) as sock:
        assert echo(sock) == b"ping"


def test_drop_closes_and_reset_aborts(proxy: ProxyThread) -> None:
    with connect(proxy) as sock:
        assert echo(sock) == b"ping"
        proxy.command("drop")
        assert sock.recv(10) == b""
    with connect(proxy) as sock:
        assert echo(sock) == b"ping"
        proxy.command("reset")
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
            sock.sendall(b"after")
            sock.recv(10)
    assert proxy.command("status")["faults"] == 2


def test_control_port_answers_each_line(proxy: ProxyThread) -> None:
    assert proxy.command("delay soon") == {
        "ok": False,
        "error": "delay soon: could not convert string to float: 'soon'",
    }
    assert proxy.command("explode")["error"].startswith("unknown command 'explode'")
    assert proxy.command("heal")["ok"] is True


def test_the_cli_takes_commands_on_its_control_port(tmp_path: object) -> None:
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        control = probe.getsockname()[1]
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hil.proxy",
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:9",
            "--control",
            f"127.0.0.1:{control}",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert cli.stdout is not None
        cli.stdout.readline()
        cli.stdout.readline()
        with socket.create_connection(("127.0.0.1", control), timeout=5) as sock:
            sock.sendall(b"blackhole on\nstatus\n")
            replies = sock.makefile()
            lines = replies.readline(), replies.readline()
        assert json.loads(lines[0])["blackhole"] is True
        assert json.loads(lines[1])["ok"] is True
    finally:
        cli.terminate()
        cli.wait(5)
