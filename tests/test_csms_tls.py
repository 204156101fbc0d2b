"""TLS in the development CSMS (hil/csms/) and the test PKI (tests/pki.py).

The failure cases pin down what a websockets 17 client (the station's library) sees for each
TLS problem, and what the CSMS records: the station maps these to security events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.headers import build_authorization_basic
from websockets.typing import Subprotocol

from hil.csms import CsmsThread, DevCsms, Entry, describe, main
from hil.pki import Authority, Pki, client_context, server_context
from tests.csms_process import banner_urls, csms_process, ended

T = TypeVar("T")
HEARTBEAT = json.dumps([2, "hb1", "Heartbeat", {}])
TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


def run(coro: Awaitable[T], timeout: float = 10) -> T:
    async def limited() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(limited())


@dataclass(frozen=True)
class Certs:
    """One PKI for the whole module: a root, an unrelated root and the usual certificates."""

    pki: Pki
    root: Authority
    other: Authority
    server: tuple[Path, Path]
    client: tuple[Path, Path]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    root = pki.ca()
    return Certs(pki, root, pki.ca("Other Root"), pki.server(root), pki.client(root, "CP001", "Test CPO"))


@contextlib.asynccontextmanager
async def station(
    url: str, context: ssl.SSLContext | None, station_id: str = "CP001", **kwargs: Any
) -> AsyncIterator[ClientConnection]:
    async with connect(
        f"{url}/{station_id}", ssl=context, subprotocols=[Subprotocol("ocpp1.6")], open_timeout=5, **kwargs
    ) as ws:
        yield ws


async def heartbeat(ws: ClientConnection) -> list[Any]:
    await ws.send(HEARTBEAT)
    frame: list[Any] = json.loads(await ws.recv())
    return frame


def connects(url: str, context: ssl.SSLContext | None, **kwargs: Any) -> bool:
    """Whether a station gets through: websocket open and a Heartbeat answered."""

    async def go() -> bool:
        async with station(url, context, **kwargs) as ws:
            return bool((await heartbeat(ws))[0] == 3)

    return run(go())


def attempt(url: str, context: ssl.SSLContext | None) -> tuple[BaseException, Exception | None]:
    """A station that must fail: ``(what connect raised, the error its connection was lost with)``.

    The second matters for TLS 1.3, where the server refuses the client certificate only after
    the client's handshake is over: websockets then raises InvalidMessage and keeps the TLS
    alert only in ``connection_lost``.
    """
    lost: list[Exception | None] = []

    class Spy(ClientConnection):
        def connection_lost(self, exc: Exception | None) -> None:
            lost.append(exc)
            super().connection_lost(exc)

    async def go() -> BaseException:
        try:
            async with station(url, context, create_connection=Spy) as ws:
                await heartbeat(ws)
        except Exception as exc:
            return exc
        raise AssertionError("the station got through")

    error = run(go())
    return error, next((e for e in lost if e is not None), None)


def wait_entries(csms: CsmsThread, where: Callable[[Entry], bool], count: int = 1) -> list[Entry]:
    """The timeline entries matching ``where``, once there are ``count`` of them (5 s at most)."""
    deadline = time.monotonic() + 5
    while True:
        found = [e for e in csms.timeline if where(e)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def payload(entry: Entry) -> dict[str, Any]:
    assert isinstance(entry.payload, dict), entry
    return entry.payload


def is_refused(entry: Entry) -> bool:
    return entry.kind == "refused"


def is_connect(entry: Entry) -> bool:
    return entry.kind == "connect"


# --- connecting --------------------------------------------------------------------------------


def test_wss_profile_2(certs: Certs) -> None:
    """Server certificate only: frames both ways, a large one too, then the CSMS closes."""
    with CsmsThread(ssl_context=server_context(*certs.server), quiet=True) as csms:
        assert csms.url == f"wss://127.0.0.1:{csms.port}/ocpp" == csms.tls_url

        async def scenario() -> None:
            async with station(csms.url, client_context(certs.root)) as ws:
                assert (await heartbeat(ws))[:2] == [3, "hb1"]
                await asyncio.to_thread(csms.wait_station, "CP001")
                data = "x" * 300_000  # many TLS records and relay chunks
                answer = asyncio.create_task(
                    asyncio.to_thread(csms.call, "CP001", "DataTransfer", {"vendorId": "V", "data": data})
                )
                frame = json.loads(await ws.recv())
                assert frame[2:] == ["DataTransfer", {"vendorId": "V", "data": data}]
                await ws.send(json.dumps([3, frame[1], {"status": "Accepted", "data": data[::-1]}]))
                assert await answer == {"status": "Accepted", "data": data[::-1]}
                await asyncio.to_thread(csms.disconnect, "CP001")
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1000

        run(scenario())
        (connected,) = wait_entries(csms, is_connect)
        assert payload(connected)["tls"] == {"version": "TLSv1.3", "client_cert": None}
        assert describe(connected) == "CP001 connected (ocpp1.6, /ocpp/CP001, TLSv1.3)"
        assert not wait_entries(csms, is_refused, 0)


def test_basic_auth_over_tls_and_set_passwords(certs: Certs) -> None:
    context = client_context(certs.root)
    good = {"Authorization": build_authorization_basic("CP001", "secret")}
    with CsmsThread(
        ssl_context=server_context(*certs.server), passwords={"CP001": "secret"}, quiet=True
    ) as csms:
        assert connects(csms.url, context, additional_headers=good)
        with pytest.raises(InvalidStatus) as caught:
            connects(csms.url, context)
        assert caught.value.response.status_code == 401
        csms.set_passwords({"CP001": "new"})
        with pytest.raises(InvalidStatus):
            connects(csms.url, context, additional_headers=good)
        assert connects(
            csms.url, context, additional_headers={"Authorization": build_authorization_basic("CP001", "new")}
        )
        csms.set_passwords(None)
        assert connects(csms.url, context)
        assert [payload(e)["status"] for e in wait_entries(csms, is_refused, 2)] == [401, 401]


@pytest.mark.parametrize("version", [TLS13, TLS12])
def test_client_certificate_profile_3(certs: Certs, version: ssl.TLSVersion) -> None:
    with CsmsThread(ssl_context=server_context(*certs.server, ca_for_clients=certs.root), quiet=True) as csms:
        assert connects(csms.url, client_context(certs.root, certs.client, max_version=version))
        (connected,) = wait_entries(csms, is_connect)
        assert payload(connected)["tls"] == {
            "version": version.name.replace("_", "."),
            "client_cert": {"commonName": "CP001", "organizationName": "Test CPO"},
        }
        assert describe(connected).endswith(
            f"{payload(connected)['tls']['version']}, client certificate CP001)"
        )


def test_plain_and_tls_on_one_port(certs: Certs) -> None:
    with CsmsThread(ssl_context=server_context(*certs.server), plain_too=True, quiet=True) as csms:
        assert csms.url == f"ws://127.0.0.1:{csms.port}/ocpp"
        assert csms.tls_url == f"wss://127.0.0.1:{csms.port}/ocpp"
        assert connects(csms.url, None)
        assert connects(csms.tls_url, client_context(certs.root), station_id="CP002")
        entries = wait_entries(csms, is_connect, 2)
        assert [(e.station, payload(e).get("tls")) for e in entries] == [
            ("CP001", None),
            ("CP002", {"version": "TLSv1.3", "client_cert": None}),
        ]
        # A failed handshake is refused and recorded; plain ones go on.
        attempt(csms.tls_url, client_context(certs.other))
        assert connects(csms.url, None)
        assert len(wait_entries(csms, is_refused)) == 1


def test_no_tls_without_a_context(certs: Certs) -> None:
    with pytest.raises(ValueError):
        DevCsms(plain_too=True)
    with CsmsThread(quiet=True) as csms:
        with pytest.raises(ValueError):
            csms.tls_url  # noqa: B018
        # A TLS client against a plain server: websockets drops the connection on the ClientHello.
        error, _ = attempt(csms.url.replace("ws://", "wss://"), client_context(certs.root))
        assert type(error) is ConnectionResetError, repr(error)


# --- what a station sees when TLS fails -------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A TLS failure: the CSMS and station contexts, what connect raises, what the CSMS records."""

    server: Callable[[Certs], ssl.SSLContext]
    client: Callable[[Certs], ssl.SSLContext | None]
    raised: type[BaseException]
    detail: str  # SSLError.reason; for a certificate error, verify_message; else the message
    lost: str | None  # reason of the SSLError the connection was lost with, if it is not `raised`
    recorded: str  # "error" of the CSMS's refused entry
    url: Callable[[str], str] = lambda url: url


def _server(**kwargs: Any) -> Callable[[Certs], ssl.SSLContext]:
    def make(c: Certs) -> ssl.SSLContext:
        return server_context(*c.server, **kwargs)

    return make


def _server_cert(**kwargs: Any) -> Callable[[Certs], ssl.SSLContext]:
    return lambda c: server_context(*c.pki.server(c.root, **kwargs))


def _profile3() -> Callable[[Certs], ssl.SSLContext]:
    return lambda c: server_context(*c.server, ca_for_clients=c.root)


def _trusting_root(c: Certs) -> ssl.SSLContext:
    return client_context(c.root)


# When the station refuses the CSMS certificate, a websockets (asyncio) client closes without
# a TLS alert: the CSMS sees an unexpected EOF.
FAILURES = {
    "expired server certificate": Failure(
        _server_cert(expired=True),
        _trusting_root,
        ssl.SSLCertVerificationError,
        "certificate has expired",
        None,
        "UNEXPECTED_EOF_WHILE_READING",
    ),
    "server certificate not yet valid": Failure(
        _server_cert(not_yet_valid=True),
        _trusting_root,
        ssl.SSLCertVerificationError,
        "certificate is not yet valid",
        None,
        "UNEXPECTED_EOF_WHILE_READING",
    ),
    "wrong host (IP address)": Failure(
        _server_cert(hosts=["csms.example.com"]),
        _trusting_root,
        ssl.SSLCertVerificationError,
        "IP address mismatch, certificate is not valid for '127.0.0.1'.",
        None,
        "UNEXPECTED_EOF_WHILE_READING",
    ),
    "wrong host (DNS name)": Failure(
        _server_cert(hosts=["csms.example.com"]),
        _trusting_root,
        ssl.SSLCertVerificationError,
        "Hostname mismatch, certificate is not valid for 'localhost'.",
        None,
        "UNEXPECTED_EOF_WHILE_READING",
        url=lambda url: url.replace("127.0.0.1", "localhost"),
    ),
    "untrusted CA": Failure(
        lambda c: server_context(*c.pki.server(c.other)),
        _trusting_root,
        ssl.SSLCertVerificationError,
        "unable to get local issuer certificate",
        None,
        "UNEXPECTED_EOF_WHILE_READING",
    ),
    "server offers only TLS 1.1": Failure(
        _server(max_version=ssl.TLSVersion.TLSv1_1),
        _trusting_root,
        ssl.SSLError,
        "TLSV1_ALERT_PROTOCOL_VERSION",
        None,
        "UNSUPPORTED_PROTOCOL",
    ),
    "no client certificate, TLS 1.2": Failure(
        _profile3(),
        lambda c: client_context(c.root, max_version=TLS12),
        ssl.SSLError,
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        None,
        "PEER_DID_NOT_RETURN_A_CERTIFICATE",
    ),
    "no client certificate, TLS 1.3": Failure(
        _profile3(),
        lambda c: client_context(c.root, max_version=TLS13),
        InvalidMessage,
        "did not receive a valid HTTP response",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "PEER_DID_NOT_RETURN_A_CERTIFICATE",
    ),
    "client certificate of another CA, TLS 1.2": Failure(
        _profile3(),
        lambda c: client_context(c.root, c.pki.client(c.other, "CP001"), max_version=TLS12),
        ssl.SSLError,
        "TLSV1_ALERT_UNKNOWN_CA",
        None,
        "CERTIFICATE_VERIFY_FAILED",
    ),
    "client certificate of another CA, TLS 1.3": Failure(
        _profile3(),
        lambda c: client_context(c.root, c.pki.client(c.other, "CP001"), max_version=TLS13),
        InvalidMessage,
        "did not receive a valid HTTP response",
        "TLSV1_ALERT_UNKNOWN_CA",
        "CERTIFICATE_VERIFY_FAILED",
    ),
    "expired client certificate, TLS 1.2": Failure(
        _profile3(),
        lambda c: client_context(c.root, c.pki.client(c.root, "CP001", expired=True), max_version=TLS12),
        ssl.SSLError,
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        None,
        "CERTIFICATE_VERIFY_FAILED",
    ),
    "plain ws:// to a TLS-only CSMS": Failure(
        _server(),
        lambda c: None,
        InvalidMessage,
        "did not receive a valid HTTP response",
        None,
        "HTTP_REQUEST",
        url=lambda url: url.replace("wss://", "ws://"),
    ),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_tls_failure(certs: Certs, name: str) -> None:
    case = FAILURES[name]
    with CsmsThread(ssl_context=case.server(certs), quiet=True) as csms:
        error, lost = attempt(case.url(csms.url), case.client(certs))
        assert type(error) is case.raised, repr(error)
        if isinstance(error, ssl.SSLCertVerificationError):
            assert (error.reason, error.verify_message) == ("CERTIFICATE_VERIFY_FAILED", case.detail)
        elif isinstance(error, ssl.SSLError):
            assert error.reason == case.detail
        else:
            assert str(error) == case.detail
            assert isinstance(error.__cause__, EOFError)
        if case.lost is not None:
            assert isinstance(lost, ssl.SSLError) and lost.reason == case.lost, repr(lost)
        (refused,) = wait_entries(csms, is_refused)
        assert (refused.station, payload(refused)["error"]) == ("", case.recorded)
        assert payload(refused)["peer"].startswith("127.0.0.1:")
        assert not wait_entries(csms, is_connect, 0)


def test_refusal_lines(certs: Certs) -> None:
    with CsmsThread(ssl_context=_profile3()(certs), quiet=True) as csms:
        attempt(csms.url, client_context(certs.root, max_version=TLS12))
        (refused,) = wait_entries(csms, is_refused)
        assert describe(refused) == (
            "? refused: TLS handshake failed (PEER_DID_NOT_RETURN_A_CERTIFICATE): "
            "peer did not return a certificate"
        )
    with CsmsThread(ssl_context=_profile3()(certs), quiet=True) as csms:
        attempt(
            csms.url, client_context(certs.root, certs.pki.client(certs.other, "CP001"), max_version=TLS12)
        )
        (refused,) = wait_entries(csms, is_refused)
        assert payload(refused)["reason"] == "unable to get local issuer certificate"


def test_tls_11_server_really_offers_tls_11(certs: Certs) -> None:
    """The TLS 1.1 case above fails on the version, not on a broken server: an old client gets in."""
    old = client_context(certs.root, max_version=ssl.TLSVersion.TLSv1_1, min_version=ssl.TLSVersion.TLSv1)
    with CsmsThread(ssl_context=_server(max_version=ssl.TLSVersion.TLSv1_1)(certs), quiet=True) as csms:
        assert connects(csms.url, old)
        (connected,) = wait_entries(csms, is_connect)
        assert payload(connected)["tls"]["version"] == "TLSv1.1"


def test_stop_closes_tls_stations_and_idle_sockets(certs: Certs) -> None:
    csms = CsmsThread(ssl_context=server_context(*certs.server), quiet=True)
    csms.start()
    idle = socket.create_connection(("127.0.0.1", csms.port))  # never starts a handshake

    async def scenario() -> int | None:
        async with station(csms.url, client_context(certs.root)) as ws:
            await heartbeat(ws)
            started = time.monotonic()
            await asyncio.to_thread(csms.stop)
            assert time.monotonic() - started < 3
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code

    try:
        assert run(scenario()) == 1001
        assert idle.recv(1) == b""  # closed by the CSMS
    finally:
        idle.close()
        csms.stop()


# --- the PKI -----------------------------------------------------------------------------------


def test_intermediate_chains(certs: Certs) -> None:
    """Server and client certificates from an intermediate: each side sends the chain, trusts the root."""
    sub = certs.pki.intermediate(certs.root)
    assert [c.subject for c in sub.chain] == [sub.cert.subject]
    server = server_context(*certs.pki.server(sub), ca_for_clients=certs.root)
    with CsmsThread(ssl_context=server, quiet=True) as csms:
        client = certs.pki.client(sub, "CP009", "Chain CPO")
        assert len(x509.load_pem_x509_certificates(client[0].read_bytes())) == 2
        assert connects(csms.url, client_context(certs.root, client), station_id="CP009")
        (connected,) = wait_entries(csms, is_connect)
        assert payload(connected)["tls"]["client_cert"] == {
            "commonName": "CP009",
            "organizationName": "Chain CPO",
        }


def test_sign_csr(certs: Certs) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "CP001"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CPO"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    sub = certs.pki.intermediate(certs.root)

    chain = x509.load_pem_x509_certificates(certs.pki.sign_csr(sub, csr_pem, days=30).encode())
    assert [c.subject for c in chain] == [subject, sub.cert.subject]
    chain[0].verify_directly_issued_by(sub.cert)
    assert chain[0].public_key() == key.public_key()
    assert (
        dt.timedelta(days=29)
        < chain[0].not_valid_after_utc - dt.datetime.now(dt.UTC)
        <= dt.timedelta(days=30)
    )

    (leaf,) = x509.load_pem_x509_certificates(certs.pki.sign_csr(certs.root, csr_pem.encode()).encode())
    leaf.verify_directly_issued_by(certs.root.cert)
    # Another subject under the same signature: well-formed, but the signature does not match.
    der = csr.public_bytes(serialization.Encoding.DER).replace(b"CP001", b"CP002")
    tampered = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValueError, match="signature"):
        certs.pki.sign_csr(certs.root, tampered)


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
def test_signing_cert(certs: Certs, kind: Any) -> None:
    root = certs.pki.ca("RSA Root", key="rsa")
    cert_pem, key = certs.pki.signing_cert(root, key=kind)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cert.verify_directly_issued_by(root.cert)
    firmware = b"firmware image"
    public = cert.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(
            key.sign(firmware, padding.PKCS1v15(), hashes.SHA256()),
            firmware,
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(key.sign(firmware, ec.ECDSA(hashes.SHA256())), firmware, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(key.sign(firmware), firmware)
    now = dt.datetime.now(dt.UTC)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
    expired = x509.load_pem_x509_certificate(certs.pki.signing_cert(root, key=kind, expired=True)[0].encode())
    assert expired.not_valid_after_utc < now


def test_root_signed_by_the_old_root(certs: Certs) -> None:
    new = certs.pki.root_signed_by(certs.root)
    cert = new.cert
    assert cert.issuer == cert.subject != certs.root.cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    old_key = certs.root.cert.public_key()
    assert isinstance(old_key, ec.EllipticCurvePublicKey) and cert.signature_hash_algorithm is not None
    old_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    own_key = cert.public_key()
    assert isinstance(own_key, ec.EllipticCurvePublicKey)
    with pytest.raises(InvalidSignature):
        own_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    # It works as a trust anchor for what it issues.
    with CsmsThread(ssl_context=server_context(*certs.pki.server(new)), quiet=True) as csms:
        assert connects(csms.url, client_context(new))


def test_ca_options(certs: Certs) -> None:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    root = certs.pki.ca("Old Root", key="rsa", valid_days=10, not_before=start)
    assert (root.cert.not_valid_before_utc, root.cert.not_valid_after_utc) == (
        start,
        start + dt.timedelta(days=10),
    )
    assert isinstance(root.key, rsa.RSAPrivateKey) and root.chain == []
    assert root.pem_path.read_text() == root.pem
    assert root.pem_path.with_suffix(".key").exists()


# --- command line ------------------------------------------------------------------------------


def test_command_line_tls(certs: Certs) -> None:
    cert, key = certs.server
    args = [
        "--port",
        "0",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--tls-ca",
        str(certs.root.pem_path),
    ]
    with csms_process(*args, "--plain-too") as proc:
        plain, tls = banner_urls(proc)
        assert plain.startswith("ws://") and tls.startswith("wss://")
        assert connects(tls, client_context(certs.root, certs.client))
        assert connects(plain, None, station_id="CP002")
        error, _ = attempt(tls, client_context(certs.root, max_version=TLS12))
        assert isinstance(error, ssl.SSLError) and error.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE"
        proc.send_signal(signal.SIGINT)
        out, err = ended(proc, 10)
    assert proc.returncode == 0, err
    assert "CP001 connected (ocpp1.6, /ocpp/CP001, TLSv1.3, client certificate CP001)" in out
    assert "refused: TLS handshake failed (PEER_DID_NOT_RETURN_A_CERTIFICATE)" in out
    for wrong in (["--tls-ca", str(certs.root.pem_path)], ["--plain-too"]):
        with pytest.raises(SystemExit):
            main(wrong)
