"""controller.io.transfer against real HTTP and FTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.server
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from controller.io.transfer import TransferError, download, redact, upload

# Otherwise pyftpdlib configures the root logger the first time a server loops.
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())

FTP_USER = "evse"
FTP_PASSWORD = "p@ss:w0rd"
FTP_PASSWORD_IN_URL = "p%40ss%3Aw0rd"
FAST = {"retry_interval_s": 0.01, "timeout_s": 2.0}

Handle = Callable[[http.server.BaseHTTPRequestHandler], None]


def run(coro: Coroutine[Any, Any, None], timeout: float = 5.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def payload(size: int) -> bytes:
    return os.urandom(size)


def reply(request: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"") -> None:
    request.send_response(status)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


@pytest.fixture
def serve_http() -> Iterator[Callable[[Handle], str]]:
    """Start an HTTP server whose every GET and POST is answered by ``handle``; its base URL."""
    servers: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def start(handle: Handle) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                handle(self)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(2)


@pytest.fixture
def ftp_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A pyftpdlib server with user evse; (host:port, the user's home directory)."""
    home = tmp_path / "ftp"
    home.mkdir()
    authorizer = DummyAuthorizer()
    authorizer.add_user(FTP_USER, FTP_PASSWORD, str(home), perm="elradfmw")
    # No 3 s pause before answering a wrong password.
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "auth_failed_timeout": 0})
    server = FTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
    serving = threading.Event()
    serving.set()

    def loop() -> None:
        while serving.is_set():
            server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    host, port = server.address
    yield f"{host}:{port}", home
    serving.clear()
    thread.join(2)
    server.close_all()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


# --- HTTP download ----------------------------------------------------------------------


def test_http_download_writes_the_file(serve_http: Callable[[Handle], str], tmp_path: Path) -> None:
    body = payload(300_000)
    base = serve_http(lambda request: reply(request, 200, body))
    dest = tmp_path / "firmware.bin"
    dest.write_bytes(b"old image")

    run(download(f"{base}/fw.bin", dest))

    assert dest.read_bytes() == body
    assert leftovers(tmp_path) == []


def test_http_download_follows_redirects(serve_http: Callable[[Handle], str], tmp_path: Path) -> None:
    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        if request.path == "/old":
            request.send_response(302)
            request.send_header("Location", "/new?x=1")
            request.send_header("Content-Length", "0")
            request.end_headers()
        else:
            reply(request, 200, request.path.encode())

    base = serve_http(handle)
    dest = tmp_path / "fw.bin"
    run(download(f"{base}/old", dest))
    assert dest.read_bytes() == b"/new?x=1"


def test_http_404_fails_after_every_retry(serve_http: Callable[[Handle], str], tmp_path: Path) -> None:
    hits: list[str] = []

    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        hits.append(request.path)
        reply(request, 404, b"no such file")

    base = serve_http(handle)
    attempts: list[int] = []
    dest = tmp_path / "fw.bin"

    with pytest.raises(TransferError) as caught:
        run(download(f"{base}/fw.bin", dest, retries=2, on_attempt=attempts.append, **FAST))

    assert attempts == [1, 2, 3]
    assert len(hits) == 3
    message = str(caught.value)
    assert "404" in message and "3 attempts" in message and f"{base}/fw.bin" in message
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_http_succeeds_after_two_failures(serve_http: Callable[[Handle], str], tmp_path: Path) -> None:
    body = payload(10_000)
    hits: list[str] = []

    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        hits.append(request.path)
        if len(hits) <= 2:
            reply(request, 503, b"busy")
        else:
            reply(request, 200, body)

    base = serve_http(handle)
    attempts: list[int] = []
    dest = tmp_path / "fw.bin"

    run(download(f"{base}/fw.bin", dest, retries=2, on_attempt=attempts.append, **FAST))

    assert attempts == [1, 2, 3]
    assert dest.read_bytes() == body


def test_http_body_cut_short_fails(serve_http: Callable[[Handle], str], tmp_path: Path) -> None:
    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Length", "100000")
        request.end_headers()
        request.wfile.write(b"x" * 1000)
        request.close_connection = True  # HTTP/1.0: the connection closes with the handler

    base = serve_http(handle)
    dest = tmp_path / "fw.bin"

    with pytest.raises(TransferError, match="after 1000 of 100000 bytes"):
        run(download(f"{base}/fw.bin", dest))

    assert not dest.exists()
    assert leftovers(tmp_path) == []


@pytest.fixture
def stalling_server(serve_http: Callable[[Handle], str]) -> Iterator[str]:
    """Sends the headers and 64 KiB of a 10 MB body, then nothing until the test ends."""
    release = threading.Event()

    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Length", str(10_000_000))
        request.end_headers()
        request.wfile.write(b"x" * 65536)
        request.wfile.flush()
        release.wait(5)

    yield serve_http(handle)
    release.set()


def test_cancelling_a_download_removes_the_part_file(stalling_server: str, tmp_path: Path) -> None:
    dest = tmp_path / "fw.bin"
    part = tmp_path / "fw.bin.part"

    async def scenario() -> None:
        task = asyncio.create_task(download(f"{stalling_server}/fw.bin", dest, timeout_s=10))
        deadline = time.monotonic() + 2
        while not (part.exists() and part.stat().st_size > 0):
            assert time.monotonic() < deadline, "the download never started"
            await asyncio.sleep(0.01)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The socket was shut: no waiting for the 10 s timeout.
        assert time.monotonic() - started < 1
        assert not part.exists()

    run(scenario())
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_a_silent_server_times_out(stalling_server: str, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"no answer within 0\.2 s"):
        run(download(f"{stalling_server}/fw.bin", tmp_path / "fw.bin", timeout_s=0.2))
    assert leftovers(tmp_path) == []


def test_unknown_scheme_fails_at_once(tmp_path: Path) -> None:
    attempts: list[int] = []
    with pytest.raises(TransferError, match="scheme 'sftp' is not supported") as caught:
        run(
            download(
                "sftp://user:secret@host/fw.bin", tmp_path / "fw.bin", retries=5, on_attempt=attempts.append
            )
        )
    assert attempts == []
    assert "secret" not in str(caught.value)


def test_missing_destination_directory(serve_http: Callable[[Handle], str], tmp_path: Path) -> None:
    base = serve_http(lambda request: reply(request, 200, b"image"))
    with pytest.raises(TransferError, match="cannot create"):
        run(download(f"{base}/fw.bin", tmp_path / "missing" / "fw.bin"))


# --- HTTP upload ------------------------------------------------------------------------


def multipart_parts(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """{part name: (filename, data)} of a multipart/form-data body."""
    boundary = content_type.split("boundary=", 1)[1].encode()
    parts = {}
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        disposition = next(
            line for line in head.decode().split("\r\n") if line.lower().startswith("content-disposition")
        )
        fields = dict(item.strip().split("=", 1) for item in disposition.split(";")[1:] if "=" in item)
        parts[fields["name"].strip('"')] = (fields["filename"].strip('"'), data.removesuffix(b"\r\n"))
    return parts


def test_http_upload_sends_the_file(serve_http: Callable[[Handle], str], tmp_path: Path) -> None:
    received: dict[str, tuple[str, bytes]] = {}

    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers["Content-Length"]))
        received.update(multipart_parts(request.headers["Content-Type"], body))
        reply(request, 201)

    base = serve_http(handle)
    data = payload(200_000)
    path = tmp_path / "diagnostics-2024-05-01.tar.gz"
    path.write_bytes(data)

    run(upload(f"{base}/upload", path))

    assert received == {"file": ("diagnostics-2024-05-01.tar.gz", data)}


def test_http_upload_500_fails(serve_http: Callable[[Handle], str], tmp_path: Path) -> None:
    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        request.rfile.read(int(request.headers["Content-Length"]))
        reply(request, 500, b"oops")

    base = serve_http(handle)
    path = tmp_path / "diag.zip"
    path.write_bytes(b"logs")
    attempts: list[int] = []

    with pytest.raises(TransferError, match="500") as caught:
        run(upload(f"{base}/upload", path, retries=1, on_attempt=attempts.append, **FAST))

    assert attempts == [1, 2]
    assert "2 attempts" in str(caught.value)


# --- FTP --------------------------------------------------------------------------------


def test_ftp_download(ftp_server: tuple[str, Path], tmp_path: Path) -> None:
    address, home = ftp_server
    body = payload(300_000)
    (home / "firmware").mkdir()
    (home / "firmware" / "fw-2.1.bin").write_bytes(body)
    dest = tmp_path / "fw.bin"

    run(download(f"ftp://{FTP_USER}:{FTP_PASSWORD_IN_URL}@{address}/firmware/fw-2.1.bin", dest))

    assert dest.read_bytes() == body
    assert leftovers(tmp_path) == []


def test_ftp_download_of_a_missing_file_fails(ftp_server: tuple[str, Path], tmp_path: Path) -> None:
    address, _ = ftp_server
    with pytest.raises(TransferError, match="550"):
        run(download(f"ftp://{FTP_USER}:{FTP_PASSWORD_IN_URL}@{address}/nope.bin", tmp_path / "fw.bin"))
    assert leftovers(tmp_path) == []


def test_ftp_upload_to_a_directory_and_to_a_file(ftp_server: tuple[str, Path], tmp_path: Path) -> None:
    address, home = ftp_server
    (home / "logs").mkdir()
    data = payload(150_000)
    path = tmp_path / "diagnostics.zip"
    path.write_bytes(data)
    url = f"ftp://{FTP_USER}:{FTP_PASSWORD_IN_URL}@{address}/logs/"

    run(upload(url, path))
    run(upload(url + "renamed.zip", path))

    assert (home / "logs" / "diagnostics.zip").read_bytes() == data
    assert (home / "logs" / "renamed.zip").read_bytes() == data


def test_ftp_wrong_password_fails_without_showing_it(ftp_server: tuple[str, Path], tmp_path: Path) -> None:
    address, _ = ftp_server
    url = f"ftp://{FTP_USER}:wrong-secret-42@{address}/fw.bin"

    with pytest.raises(TransferError) as caught:
        run(download(url, tmp_path / "fw.bin"))

    message = str(caught.value)
    assert "wrong-secret-42" not in message
    assert f"ftp://{FTP_USER}:***@{address}/fw.bin" in message
    assert "530" in message and "password" in message
    assert leftovers(tmp_path) == []


# --- redact -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://user:secret@host/path/fw.bin", "ftp://user:***@host/path/fw.bin"),
        ("https://host/fw.bin?sig=1", "https://host/fw.bin?sig=1"),
        ("ftp://user@host:21/fw.bin", "ftp://user@host:21/fw.bin"),
        ("ftp://u:p@ss:w@host:2121/x", "ftp://u:***@host:2121/x"),
        ("http://me@example.com:pw@host:8080/a?b=c", "http://me@example.com:***@host:8080/a?b=c"),
        ("http://host/path?next=http://a:b@c", "http://host/path?next=http://a:b@c"),
        ("not a url", "not a url"),
    ],
)
def test_redact(url: str, expected: str) -> None:
    assert redact(url) == expected
