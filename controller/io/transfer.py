"""File transfers for OCPP firmware updates and diagnostics uploads: HTTP(S) and FTP.

The network I/O is blocking (``http.client``, ``ftplib``) and runs in a worker thread, so
the event loop never waits on a socket. ``timeout_s`` bounds each connect, read and write,
not the whole transfer: wrap the call in ``asyncio.timeout`` for a deadline.

A download streams into ``<dest>.part``, fsyncs it and renames it over ``dest``, so
``dest`` is always the old file or the complete new one. Cancelling a transfer shuts its
sockets, which stops the worker thread at once; a cancelled download has removed its
``.part`` file by the time the ``CancelledError`` reaches the caller.

FTP paths follow RFC 1738, as curl does: ``ftp://host/dir/file`` is relative to the login
directory, ``ftp://host/%2Fdir/file`` is absolute.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ftplib
import http.client
import io
import logging
import os
import re
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "evse-pi"

# Up to the first ":" of the userinfo is the user, the rest up to the last "@" of the
# authority the password: the same split as urllib.parse.
_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#]*):[^/?#]*@")
# RFC 3986: a URL is printable ASCII, anything else percent-encoded.
_BAD_URL_CHAR = re.compile(r"[^\x21-\x7e]")


class TransferError(Exception):
    """A download or upload failed: what, where (without password) and what to check."""


class _Failed(Exception):
    """One attempt failed for a reason already worded for ``TransferError``."""


class _Aborted(Exception):
    """The event loop cancelled the transfer."""


def redact(url: str) -> str:
    """``url`` with the password (if any) replaced by ``***``, for logs and messages."""
    return _PASSWORD.sub(r"\1:***@", url, count=1)


async def download(
    url: str,
    dest: Path,
    *,
    retries: int = 0,
    retry_interval_s: float = 30.0,
    timeout_s: float = 60.0,
    on_attempt: Callable[[int], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Fetch an http, https or ftp ``url`` into ``dest``, trying up to ``retries + 1`` times.

    ``on_attempt(n)`` is called before attempt n (from 1). Raises ``TransferError`` when
    every attempt failed, or at once for a URL it cannot use.
    """
    parts = _parse(url, "download")
    dest = Path(dest)

    def attempt(abort: _Abort) -> None:
        with _PartFile(dest, abort) as part:
            if parts.scheme == "ftp":
                _ftp_download(parts, part, timeout_s, abort)
            else:
                _http_download(parts, part, timeout_s, ssl_context, abort)
            part.commit()

    await _with_retries("download", url, attempt, retries, retry_interval_s, timeout_s, on_attempt)


async def upload(
    url: str,
    path: Path,
    *,
    retries: int = 0,
    retry_interval_s: float = 30.0,
    timeout_s: float = 60.0,
    on_attempt: Callable[[int], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Send ``path`` to an ftp URL (STOR) or http(s) URL (multipart POST, part "file").

    An ftp URL ending in "/" names a directory, the file is stored there under its own
    name. Retries, ``on_attempt`` and errors as for ``download``.
    """
    parts = _parse(url, "upload")
    path = Path(path)

    def attempt(abort: _Abort) -> None:
        if parts.scheme == "ftp":
            _ftp_upload(parts, path, timeout_s, abort)
        else:
            _http_upload(parts, path, timeout_s, ssl_context, abort)

    await _with_retries("upload", url, attempt, retries, retry_interval_s, timeout_s, on_attempt)


# --- running attempts -------------------------------------------------------------------


class _Abort:
    """How the event loop stops a worker thread, even one blocked in a socket call.

    The thread registers its sockets with ``watching`` and calls ``check`` between chunks;
    ``trigger`` sets the flag and shuts the sockets, which wakes a blocked recv or send.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._triggered = False
        self._sockets: list[socket.socket] = []
        self._holds_part = False

    def check(self) -> None:
        if self._triggered:
            raise _Aborted

    @contextlib.contextmanager
    def watching(self, sock: socket.socket | None) -> Iterator[None]:
        """Let ``trigger`` shut ``sock`` until the block ends (before the socket is closed)."""
        if sock is None:
            raise _Failed("the connection closed at once; check the server")
        with self._lock:
            self.check()
            self._sockets.append(sock)
        try:
            yield
        finally:
            # Under the lock, so trigger never shuts a closed socket whose number the
            # kernel has already handed to another file.
            with self._lock:
                self._sockets.remove(sock)

    def claim_part(self) -> None:
        """The thread is about to create the ``.part`` file (and will remove it on failure)."""
        with self._lock:
            self.check()
            self._holds_part = True

    def trigger(self) -> bool:
        """Stop the thread; True if it may hold a ``.part`` file, so is worth waiting for."""
        with self._lock:
            self._triggered = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    # The plain socket's shutdown: SSLSocket's would also drop its TLS
                    # state under the reading thread.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
            return self._holds_part


async def _in_thread(attempt: Callable[[_Abort], None]) -> None:
    abort = _Abort()
    worker = asyncio.ensure_future(asyncio.to_thread(attempt, abort))
    # After a cancellation nobody awaits the worker: mark its outcome (_Aborted) as seen.
    worker.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        await asyncio.shield(worker)
    except asyncio.CancelledError:
        if abort.trigger():
            # The thread removes its .part file on the way out, promptly now that its
            # sockets are shut; wait for that so no .part outlives the cancellation.
            while not worker.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([worker])
        raise


async def _with_retries(
    action: str,
    url: str,
    attempt: Callable[[_Abort], None],
    retries: int,
    retry_interval_s: float,
    timeout_s: float,
    on_attempt: Callable[[int], None] | None,
) -> None:
    attempts = max(0, retries) + 1
    for number in range(1, attempts + 1):
        if number > 1:
            await asyncio.sleep(retry_interval_s)
        if on_attempt is not None:
            on_attempt(number)
        try:
            await _in_thread(attempt)
        except (_Failed, OSError, EOFError, ftplib.Error, http.client.HTTPException) as exc:
            reason = _describe(exc, timeout_s)
            log.warning(
                "%s of %s failed (attempt %d of %d): %s", action, redact(url), number, attempts, reason
            )
            if number == attempts:
                plural = "s" if attempts > 1 else ""
                raise TransferError(
                    f"{action} of {redact(url)} failed after {attempts} attempt{plural}: {reason}"
                ) from exc
        else:
            log.info("%s of %s done", action, redact(url))
            return


def _parse(url: str, action: str) -> SplitResult:
    """The URL's parts, or TransferError at once: retrying cannot mend the URL."""
    try:
        parts = _check_url(url)
    except _Failed as exc:
        raise TransferError(f"cannot {action} {redact(url)}: {exc}") from None
    return parts


def _check_url(url: str, schemes: tuple[str, ...] = ("http", "https", "ftp")) -> SplitResult:
    if _BAD_URL_CHAR.search(url):
        raise _Failed("the URL contains spaces, control or non-ASCII characters; percent-encode them")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as exc:
        raise _Failed(f"malformed URL ({exc}); check the URL") from None
    if parts.scheme not in schemes:
        raise _Failed(f"scheme {parts.scheme or '(none)'!r} is not supported; use {', '.join(schemes)}")
    if not parts.hostname:
        raise _Failed("the URL has no host; check the URL")
    if parts.scheme == "ftp" and re.search(r"[\x00-\x1f\x7f]", unquote(parts.path)):
        raise _Failed("the FTP path contains control characters; check the URL")
    return parts


def _describe(exc: BaseException, timeout_s: float) -> str:
    """What went wrong and what to check, for a technician."""
    if isinstance(exc, _Failed):
        return str(exc)
    if isinstance(exc, ftplib.error_perm):
        reply = str(exc).strip()
        if reply.startswith("530"):
            return f"the FTP server refused the login ({reply}); check the user name and password in the URL"
        return f"the FTP server refused ({reply}); check the path and the account's permissions"
    if isinstance(exc, ftplib.Error):
        return f"FTP error ({str(exc).strip()}); check the FTP server"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s; check that the server is up and reachable"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror}); check the host in the URL and DNS"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused; check the host and port in the URL and that the server runs"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate rejected ({exc.verify_message}); "
            "check the server's certificate, the CA certificates and the system clock"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc}); check that the server speaks TLS on that port"
    return f"connection failed ({type(exc).__name__}: {exc}); check the network and the server"


# --- local files ------------------------------------------------------------------------


class _PartFile:
    """``<dest>.part``: created once the server sends, renamed over ``dest`` when complete."""

    def __init__(self, dest: Path, abort: _Abort) -> None:
        self.dest = dest
        self.path = dest.with_suffix(dest.suffix + ".part")
        self._abort = abort
        self._file: io.BufferedWriter | None = None
        self._created = False

    def __enter__(self) -> _PartFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        # Only a file this attempt created: a later download may already own the name.
        if self._created:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)

    def open(self) -> None:
        self._abort.claim_part()
        try:
            self._file = open(self.path, "wb")  # noqa: SIM115 -- closed in __exit__
        except OSError as exc:
            raise _local_failure("create", self.path, exc) from exc
        self._created = True

    def write(self, data: bytes) -> None:
        assert self._file is not None, "open() first"
        try:
            self._file.write(data)
        except OSError as exc:
            raise _local_failure("write", self.path, exc) from exc

    def commit(self) -> None:
        """fsync, then rename over ``dest``: after a power cut, the old file or the new one."""
        assert self._file is not None, "open() first"
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._abort.check()
            os.replace(self.path, self.dest)
        except OSError as exc:
            raise _local_failure("write", self.path, exc) from exc
        self._created = False
        # Makes the rename itself durable; some file systems cannot fsync a directory,
        # and then the worst a power cut does is bring back the old file.
        with contextlib.suppress(OSError):
            fd = os.open(self.dest.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _local_failure(verb: str, path: Path, exc: OSError) -> _Failed:
    hint = "the file exists and is readable" if verb == "read" else "the directory exists and has free space"
    return _Failed(f"cannot {verb} {path} ({exc.strerror or exc}); check that {hint}")


@contextlib.contextmanager
def _open_local(path: Path) -> Iterator[io.BufferedReader]:
    try:
        file = open(path, "rb")  # noqa: SIM115 -- closed below
    except OSError as exc:
        raise _local_failure("read", path, exc) from exc
    with file:
        yield file


def _chunks(file: io.BufferedReader, path: Path, abort: _Abort, size: int | None = None) -> Iterator[bytes]:
    """The file in chunks, checking for an abort between them; exactly ``size`` bytes if given."""
    left = size
    while left is None or left > 0:
        abort.check()
        try:
            data = file.read(CHUNK if left is None else min(CHUNK, left))
        except OSError as exc:
            raise _local_failure("read", path, exc) from exc
        if not data:
            if left is not None:
                raise _Failed(f"{path} shrank while it was sent; try again once nothing writes it")
            return
        if left is not None:
            left -= len(data)
        yield data


# --- HTTP -------------------------------------------------------------------------------


def _http_connection(
    parts: SplitResult, timeout_s: float, ssl_context: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    host = parts.hostname or ""
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, parts.port, timeout=timeout_s, context=ssl_context)
    return http.client.HTTPConnection(host, parts.port, timeout=timeout_s)


def _http_target(parts: SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _http_headers(parts: SplitResult) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    return headers


def _http_status_failure(response: http.client.HTTPResponse) -> _Failed:
    status = response.status
    if status in (401, 403):
        hint = "check the credentials or access token in the URL"
    elif status in (404, 410):
        hint = "check the path in the URL"
    elif status >= 500:
        hint = "the server failed, check its logs"
    else:
        hint = "check the URL"
    return _Failed(f"the server answered {status} {response.reason}; {hint}")


def _redirect(parts: SplitResult, location: str) -> SplitResult:
    # Credentials go to the first host only, as with browsers and curl.
    base = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return _check_url(urljoin(base, location), ("http", "https"))


def _http_download(
    parts: SplitResult, part: _PartFile, timeout_s: float, ssl_context: ssl.SSLContext | None, abort: _Abort
) -> None:
    for _ in range(MAX_REDIRECTS + 1):
        connection = _http_connection(parts, timeout_s, ssl_context)
        try:
            connection.connect()
            with abort.watching(connection.sock):
                connection.request("GET", _http_target(parts), headers=_http_headers(parts))
                with connection.getresponse() as response:
                    location = response.getheader("Location")
                    if response.status in REDIRECTS and location:
                        parts = _redirect(parts, location)
                        continue
                    if response.status != 200:
                        raise _http_status_failure(response)
                    _http_receive(response, part, abort)
                    return
        finally:
            connection.close()
    raise _Failed(f"more than {MAX_REDIRECTS} redirects; check the URL")


def _http_receive(response: http.client.HTTPResponse, part: _PartFile, abort: _Abort) -> None:
    expected = response.length  # None when chunked or read to the close
    part.open()
    received = 0
    while data := response.read(CHUNK):
        abort.check()
        part.write(data)
        received += len(data)
    # http.client ends a body cut short quietly; a chunked one raises.
    if expected is not None and received < expected:
        raise _Failed(
            f"the connection closed after {received} of {expected} bytes; check the network and the server"
        )


def _http_upload(
    parts: SplitResult, path: Path, timeout_s: float, ssl_context: ssl.SSLContext | None, abort: _Abort
) -> None:
    boundary = "evse-" + secrets.token_hex(16)
    # Quoted as browsers do (HTML form submission), the name itself in UTF-8.
    filename = path.name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    with _open_local(path) as file:
        size = os.fstat(file.fileno()).st_size
        connection = _http_connection(parts, timeout_s, ssl_context)
        try:
            connection.connect()
            with abort.watching(connection.sock):
                connection.putrequest("POST", _http_target(parts))
                for name, value in _http_headers(parts).items():
                    connection.putheader(name, value)
                connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
                connection.putheader("Content-Length", str(len(head) + size + len(tail)))
                connection.endheaders(head)
                for data in _chunks(file, path, abort, size):
                    connection.send(data)
                connection.send(tail)
                with connection.getresponse() as response:
                    response.read()
                    if not 200 <= response.status < 300:
                        raise _http_status_failure(response)
        finally:
            connection.close()


# --- FTP --------------------------------------------------------------------------------


def _ftp_path(parts: SplitResult) -> str:
    """The path after the "/" that ends the host: relative to the login directory."""
    return unquote(parts.path)[1:]


@contextlib.contextmanager
def _ftp_session(parts: SplitResult, timeout_s: float, abort: _Abort) -> Iterator[ftplib.FTP]:
    """Logged in (anonymous without a user in the URL), binary, passive."""
    ftp = ftplib.FTP(timeout=timeout_s)
    try:
        ftp.connect(parts.hostname or "", parts.port or ftplib.FTP_PORT)
        with abort.watching(ftp.sock):
            ftp.login(unquote(parts.username or "anonymous"), unquote(parts.password or ""))
            ftp.set_pasv(True)
            ftp.voidcmd("TYPE I")
            yield ftp
            # The transfer is complete: a failed goodbye changes nothing.
            with contextlib.suppress(*ftplib.all_errors):
                ftp.quit()
    finally:
        ftp.close()


def _ftp_download(parts: SplitResult, part: _PartFile, timeout_s: float, abort: _Abort) -> None:
    with _ftp_session(parts, timeout_s, abort) as ftp:
        with ftp.transfercmd(f"RETR {_ftp_path(parts)}") as data_socket, abort.watching(data_socket):
            part.open()
            while data := data_socket.recv(CHUNK):
                abort.check()
                part.write(data)
        # 226 when the server sent everything; a transfer cut short gets 426 or EOF.
        ftp.voidresp()


def _ftp_upload(parts: SplitResult, path: Path, timeout_s: float, abort: _Abort) -> None:
    target = _ftp_path(parts)
    if not target or target.endswith("/"):
        target += path.name
    with _open_local(path) as file, _ftp_session(parts, timeout_s, abort) as ftp:
        with ftp.transfercmd(f"STOR {target}") as data_socket, abort.watching(data_socket):
            for data in _chunks(file, path, abort):
                data_socket.sendall(data)
        ftp.voidresp()
