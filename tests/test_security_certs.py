"""Security end to end, OCPP 1.6 (Security Whitepaper) and 2.0.1 (blocks A, M, N): certificate
management, the client certificate signing flow, AdditionalRootCertificateCheck, security
events and the security log.

The daemon runs as a subprocess on simulated hardware against the development CSMS; plain
ws:// except where the test needs TLS (the switch-over to a certificate the CSMS signed).
Every certificate is made at test time (tests/pki.py). Most tests run once per OCPP version.
A test is named after the OCTT test case it follows where the id is known (``tc_<2.0.1 id>``
with the 1.6 case in its docstring, ``tc_0xx`` for a 1.6-only case), else after the use case
(A02 certificate update, A04 security events, M04 delete, M05 install). The repeats of the
2.0.1 CSR (A02.FR.17-18, TC_A_15_CS) run in-process in test_inproc_security_certs.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import hashlib
import http.server
import json
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hil.csms import CsmsThread, Entry
from hil.pki import Authority, Pki, server_context
from hil.simrig import SimRig
from tests.ocpp_harness import Bench, eventually, make_bench, stop_all

VERSIONS = ("1.6", "2.0.1")
STATION = "CP001"
ORGANIZATION = "Example CPO"
PASSWORD = "a-password-of-24-chars!!"


# -- what differs between the versions -------------------------------------------------------


@dataclass(frozen=True)
class Words:
    """The messages and names of one OCPP version."""

    version: str

    @property
    def v16(self) -> bool:
        return self.version == "1.6"

    @property
    def csms_root(self) -> str:
        return "CentralSystemRootCertificate" if self.v16 else "CSMSRootCertificate"

    def event(self, name: str) -> str:
        """A security event's name in this version (the 2.0.1 name given)."""
        names_16 = {
            "FailedToAuthenticateAtCsms": "FailedToAuthenticateAtCentralSystem",
            "InvalidCsmsCertificate": "InvalidCentralSystemCertificate",
            "InvalidChargingStationCertificate": "InvalidChargePointCertificate",
        }
        return names_16.get(name, name) if self.v16 else name

    def install(self, bench: Bench, pem: str, kind: str = "csms") -> str:
        cert_type = self.csms_root if kind == "csms" else "ManufacturerRootCertificate"
        reply = bench.call("InstallCertificate", {"certificateType": cert_type, "certificate": pem})
        return str(reply["status"])

    def installed(self, bench: Bench, kind: str = "csms") -> tuple[str, list[dict[str, str]]]:
        """GetInstalledCertificateIds for one type: (status, the hash data listed)."""
        cert_type = self.csms_root if kind == "csms" else "ManufacturerRootCertificate"
        if self.v16:
            reply = bench.call("GetInstalledCertificateIds", {"certificateType": cert_type})
            return reply["status"], reply.get("certificateHashData", [])
        reply = bench.call("GetInstalledCertificateIds", {"certificateType": [cert_type]})
        chain = reply.get("certificateHashDataChain", [])
        assert all(item["certificateType"] == cert_type for item in chain), reply
        return reply["status"], [item["certificateHashData"] for item in chain]

    def delete(self, bench: Bench, hash_data: dict[str, str]) -> str:
        return str(bench.call("DeleteCertificate", {"certificateHashData": hash_data})["status"])

    def request_csr(self, bench: Bench) -> str:
        """Ask the station for a new client certificate (it answers with SignCertificate)."""
        if self.v16:
            reply = bench.call("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
        else:
            reply = bench.call("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
        return str(reply["status"])

    def certificate_signed(self, bench: Bench, chain: str) -> str:
        payload = {"certificateChain": chain}
        if not self.v16:
            payload["certificateType"] = "ChargingStationCertificate"
        return str(bench.call("CertificateSigned", payload)["status"])

    def set_organization(self, bench: Bench, name: str) -> None:
        if self.v16:
            reply = bench.call("ChangeConfiguration", {"key": "CpoName", "value": name})
            assert reply["status"] == "Accepted", reply
        else:
            set_variables(bench, ("SecurityCtrlr", "OrganizationName", name))

    def reset(self, bench: Bench) -> None:
        reply = bench.call("Reset", {"type": "Soft" if self.v16 else "Immediate"})
        assert reply["status"] == "Accepted", reply

    def setting_key(self, name: str) -> str:
        """The settings-table key a manufacturer presets a read-only variable with."""
        return f"ocpp16.{name}" if self.v16 else f"ocpp201.SecurityCtrlr/{name}/Actual"

    def read(self, bench: Bench, name: str) -> str | None:
        """A 1.6 configuration key or a 2.0.1 SecurityCtrlr variable, as the CSMS reads it."""
        if self.v16:
            reply = bench.call("GetConfiguration", {"key": [name]})
            return next((k.get("value") for k in reply["configurationKey"] if k["key"] == name), None)
        item = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": name}}
        result = bench.call("GetVariables", {"getVariableData": [item]})["getVariableResult"][0]
        return result.get("attributeValue")


def set_variables(bench: Bench, *items: tuple[str, str, str]) -> None:
    data = [
        {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value} for c, v, value in items
    ]
    reply = bench.call("SetVariables", {"setVariableData": data})
    assert [r["attributeStatus"] for r in reply["setVariableResult"]] == ["Accepted"] * len(items), reply


# -- certificates ------------------------------------------------------------------------------


def expected_hash(cert: x509.Certificate, issuer: x509.Certificate | None = None) -> dict[str, str]:
    """CertificateHashData as the CSMS computes it (RFC 6960 CertID), independently of the station:
    SHA-256 of the issuer's DER name and of the issuer key's subjectPublicKey bits, serial in hex."""
    key = (issuer or cert).public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        bits = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        bits = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
        "issuerKeyHash": hashlib.sha256(bits).hexdigest(),
        "serialNumber": format(cert.serial_number, "x"),
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def config_root(pki: Pki) -> Authority:
    """The CSMS root the technician put in the config file (ocpp.ca_file)."""
    return pki.ca("Config CSMS Root")


# -- benches -----------------------------------------------------------------------------------


@pytest.fixture(params=VERSIONS)
def words(request: pytest.FixtureRequest) -> Words:
    return Words(request.param)


@dataclass
class Lab:
    """Makes CSMSs and stations for one test; stops them all at its end (timelines printed)."""

    root: Path
    servers: list[CsmsThread] = field(default_factory=list)
    benches: list[Bench] = field(default_factory=list)

    def csms(self, version: str, **kwargs: Any) -> CsmsThread:
        server = CsmsThread(quiet=True, versions=(version,), **kwargs)
        server.start()
        self.servers.append(server)
        return server

    def station(self, csms: CsmsThread, version: str, ocpp: str = "", start: bool = True) -> Bench:
        """A station with one EVSE; ``ocpp`` lines are added to its [ocpp] table."""
        folder = self.root / f"station{len(self.benches)}"
        folder.mkdir()
        bench = make_bench(folder, csms, version=version)
        if ocpp:
            bench.config.write_text(bench.config.read_text().replace("[ocpp]\n", f"[ocpp]\n{ocpp}"))
        self.benches.append(bench)
        if start:
            bench.start()
        return bench

    def close(self) -> None:
        stop_all(self.benches, self.servers)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    made = Lab(tmp_path)
    yield made
    made.close()


def ca_file_line(root: Authority) -> str:
    return f'ca_file = "{root.pem_path}"\n'


@pytest.fixture
def plain(lab: Lab, words: Words, config_root: Authority) -> Bench:
    """A booted station on plain ws:// whose config names a CSMS root (ocpp.ca_file)."""
    return lab.station(lab.csms(words.version), words.version, ca_file_line(config_root))


# -- waiting and looking -----------------------------------------------------------------------


def security_event(bench: Bench, words: Words, name: str, after: int, timeout: float = 10) -> dict[str, Any]:
    """The next SecurityEventNotification of this (2.0.1-named) type."""
    wanted = words.event(name)
    return bench.wait("SecurityEventNotification", lambda p: p["type"] == wanted, timeout, after)


def calls_since(bench: Bench, action: str, after: int) -> list[Entry]:
    return [
        e
        for e in bench.csms.timeline[after:]
        if e.kind == "call" and e.direction == "in" and e.action == action and e.station == STATION
    ]


def events_since(bench: Bench, after: int) -> list[str]:
    return [e.payload["type"] for e in calls_since(bench, "SecurityEventNotification", after)]  # type: ignore[index]


def quiet(
    bench: Bench, action: str, after: int, seconds: float, where: Callable[..., bool] | None = None
) -> None:
    """The station sends no such CALL for ``seconds``."""
    with pytest.raises(TimeoutError):
        bench.wait(action, where, timeout=seconds, after=after)


def security_outbox(bench: Bench) -> list[dict[str, Any]]:
    return [
        json.loads(body) for (body,) in bench.db("SELECT body FROM outbox WHERE kind='security' ORDER BY id")
    ]


def security_log(bench: Bench) -> list[dict[str, Any]]:
    path = bench.dir / "var" / "security.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# == 1. InstallCertificate, GetInstalledCertificateIds, DeleteCertificate =========================


def test_tc_m_01_install_csms_root_certificate_listed_with_hash_data(
    plain: Bench, words: Words, pki: Pki, config_root: Authority
) -> None:
    """2.0.1 TC_M_01_CS + M03 (GetInstalledCertificateIds); 1.6 TC_075 (install a certificate).

    The hash data are what the CSMS computes itself; the config's root is listed too."""
    new_root = pki.ca("Installed CSMS Root")
    status, before = words.installed(plain)
    assert status == "Accepted"
    assert before == [expected_hash(config_root.cert)]
    mark = plain.mark()
    assert words.install(plain, new_root.pem) == "Accepted"
    security_event(plain, words, "ReconfigurationOfSecurityParameters", mark)
    status, listed = words.installed(plain)
    assert status == "Accepted"
    assert sorted(listed, key=json.dumps) == sorted(
        [expected_hash(config_root.cert), expected_hash(new_root.cert)], key=json.dumps
    )
    # Installing the same root again changes nothing.
    assert words.install(plain, new_root.pem) == "Accepted"
    assert len(words.installed(plain)[1]) == 2
    # An RSA root: the key hash covers the RSAPublicKey bits.
    rsa_root = pki.ca("RSA CSMS Root", key="rsa")
    assert words.install(plain, rsa_root.pem) == "Accepted"
    assert expected_hash(rsa_root.cert) in words.installed(plain)[1]
    # No manufacturer root in this store (2.0.1 TC_M_19_CS: NotFound).
    assert words.installed(plain, kind="manufacturer")[0] == "NotFound"


def test_tc_m_18_get_installed_certificate_ids_all_types(lab: Lab, config_root: Authority, pki: Pki) -> None:
    """2.0.1 TC_M_18_CS: without certificateType every root is listed with its type."""
    words = Words("2.0.1")
    bench = lab.station(lab.csms("2.0.1"), "2.0.1", ca_file_line(config_root))
    maker = pki.ca("Manufacturer Root")
    assert words.install(bench, maker.pem, kind="manufacturer") == "Accepted"
    reply = bench.call("GetInstalledCertificateIds", {})
    assert reply["status"] == "Accepted"
    got = sorted(reply["certificateHashDataChain"], key=lambda i: i["certificateType"])
    assert got == [
        {"certificateType": "CSMSRootCertificate", "certificateHashData": expected_hash(config_root.cert)},
        {"certificateType": "ManufacturerRootCertificate", "certificateHashData": expected_hash(maker.cert)},
    ]


def test_m05_install_certificate_not_a_root_rejected(
    plain: Bench, words: Words, pki: Pki, config_root: Authority
) -> None:
    """M05.FR.06 / 1.6 A03: a leaf (non-CA), a CA that is not self-signed, an expired root and
    garbage are Rejected, and nothing is stored."""
    issuer = pki.ca("Some Root")
    client_chain, _ = pki.client(issuer, STATION)
    sub_ca = pki.intermediate(issuer, "Some Sub CA")
    expired = pki.ca("Expired Root", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30), valid_days=2)
    for pem in (client_chain.read_text(), sub_ca.pem, expired.pem, "not a certificate"):
        assert words.install(plain, pem) == "Rejected", pem[:60]
    assert words.installed(plain) == ("Accepted", [expected_hash(config_root.cert)])


def test_m05_install_certificate_store_full_failed(plain: Bench, words: Words, pki: Pki) -> None:
    """CertificateStoreMaxLength 20: the 21st root is refused with Failed (the config's root does
    not count); once one is deleted there is room again."""
    roots = [pki.ca(f"Root {n}") for n in range(21)]
    statuses = [words.install(plain, root.pem) for root in roots]
    assert statuses == ["Accepted"] * 20 + ["Failed"]
    assert len(words.installed(plain)[1]) == 21  # 20 installed + the config's
    assert words.delete(plain, expected_hash(roots[0].cert)) == "Accepted"
    assert words.install(plain, roots[20].pem) == "Accepted"


def test_m04_delete_certificate(plain: Bench, words: Words, pki: Pki, config_root: Authority) -> None:
    """2.0.1 M04 (TC_M_22_CS: NotFound), 1.6 TC_076_CS. A root from the config
    file cannot be deleted (Failed)."""
    root = pki.ca("Doomed Root")
    assert words.install(plain, root.pem) == "Accepted"
    hash_data = expected_hash(root.cert)
    mark = plain.mark()
    assert words.delete(plain, hash_data) == "Accepted"
    security_event(plain, words, "ReconfigurationOfSecurityParameters", mark)
    assert words.installed(plain) == ("Accepted", [expected_hash(config_root.cert)])
    assert words.delete(plain, hash_data) == "NotFound"
    # The CSMS may write the hashes in capitals and the serial with leading zeros (40 at most).
    assert words.install(plain, root.pem) == "Accepted"
    shouted = {k: v.upper() for k, v in hash_data.items()}
    shouted["serialNumber"] = hash_data["serialNumber"].rjust(40, "0")
    assert words.delete(plain, shouted) == "Accepted"
    assert words.delete(plain, expected_hash(config_root.cert)) == "Failed"
    assert words.installed(plain) == ("Accepted", [expected_hash(config_root.cert)])


# == 2. The client certificate: CSR, CertificateSigned, switch-over ================================


def check_csr(csr_pem: str, organization: str) -> x509.CertificateSigningRequest:
    """The CSR the station sent: EC P-256, signed, CN = the station id, O = the operator."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [STATION]
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [organization]
    return csr


def sign_request(bench: Bench, words: Words, after: int) -> dict[str, Any]:
    """The station's SignCertificate after a trigger."""
    payload = bench.wait("SignCertificate", after=after)
    if not words.v16:
        assert payload["certificateType"] == "ChargingStationCertificate"
    return payload


@dataclass
class Profile3:
    """A station at security profile 3 with a client certificate from the config (CA 1, O =
    "Config CPO") and a CSMS that takes client certificates of CA 1 and of CA 2."""

    bench: Bench
    csms: CsmsThread
    ca2: Authority


def profile3_station(lab: Lab, words: Words, pki: Pki) -> Profile3:
    server_root, ca1, ca2 = pki.ca("CSMS Server Root"), pki.ca("Station CA 1"), pki.ca("Station CA 2")
    context = server_context(*pki.server(server_root), ca_for_clients=ca1)
    context.load_verify_locations(cafile=ca2.pem_path)
    csms = lab.csms(words.version, ssl_context=context)
    cert, key = pki.client(ca1, STATION, "Config CPO")
    lines = f'security_profile = 3\n{ca_file_line(server_root)}cert_file = "{cert}"\nkey_file = "{key}"\n'
    bench = lab.station(csms, words.version, lines)
    assert client_certs(csms, 0) == [{"commonName": STATION, "organizationName": "Config CPO"}]
    words.set_organization(bench, ORGANIZATION)
    return Profile3(bench, csms, ca2)


def client_certs(csms: CsmsThread, after: int) -> list[Any]:
    """The client certificate subject of each TLS connection since timeline index ``after``."""
    return [e.payload["tls"]["client_cert"] for e in csms.timeline[after:] if e.kind == "connect"]  # type: ignore[index]


def renew(station: Profile3, words: Words, pki: Pki) -> str:
    """Trigger a CSR, sign it with CA 2 and send CertificateSigned (Accepted): the chain sent."""
    bench = station.bench
    mark = bench.mark()
    assert words.request_csr(bench) == "Accepted"
    csr = check_csr(sign_request(bench, words, mark)["csr"], ORGANIZATION)
    chain = pki.sign_csr(station.ca2, csr.public_bytes(serialization.Encoding.PEM))
    mark = bench.mark()
    assert words.certificate_signed(bench, chain) == "Accepted"
    security_event(bench, words, "ReconfigurationOfSecurityParameters", mark)
    return chain


def test_tc_a_11_update_charging_station_certificate_by_csms(lab: Lab, words: Words, pki: Pki) -> None:
    """2.0.1 TC_A_11_CS (+ TC_M_23_CS), 1.6 TC_074_CS, at security profile 3.

    The station's CSR (EC P-256, CN = station id, O = OrganizationName / CpoName) is signed by
    CA 2; after CertificateSigned the key is a private file, and from the next connection on the
    station presents the new certificate (O tells it from the config's)."""
    station = profile3_station(lab, words, pki)
    bench, csms = station.bench, station.csms
    chain = renew(station, words, pki)

    # The new key and certificate are private files under <storage>/certs.
    certs = bench.dir / "var" / "certs"
    files = [p for p in certs.rglob("*") if not p.is_symlink()]
    keys = [p for p in files if p.is_file() and p.suffix == ".key"]
    assert keys, sorted(str(p) for p in files)
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {mode:o}"
    secret = keys[0].read_text().splitlines()[1]
    assert secret not in bench.log.read_text(errors="replace")

    # Used from the next connection on.
    mark = bench.mark()
    csms.disconnect(STATION)
    eventually(lambda: client_certs(csms, mark), 15, "the reconnection")  # no boot: a reconnection
    assert client_certs(csms, mark) == [{"commonName": STATION, "organizationName": ORGANIZATION}]
    # ... and after a restart.
    mark = bench.mark()
    bench.stop()
    bench.start()
    assert client_certs(csms, mark) == [{"commonName": STATION, "organizationName": ORGANIZATION}]

    # TC_M_23_CS: the station's own certificate cannot be deleted.
    signed = x509.load_pem_x509_certificates(chain.encode())[0]
    assert words.delete(bench, expected_hash(signed, station.ca2.cert)) == "Failed"


def test_tc_074_station_reconnects_with_new_certificate(lab: Lab, pki: Pki) -> None:
    """1.6 TC_074_CS step 7 (Security Whitepaper A02: "switch to the new certificate as soon as
    it is valid"): the station itself reconnects with the new certificate. (2.0.1 A02 reads the
    same and behaves the same; one version suffices to show it.)"""
    words = Words("1.6")
    station = profile3_station(lab, words, pki)
    mark = station.bench.mark()
    renew(station, words, pki)
    new = {"commonName": STATION, "organizationName": ORGANIZATION}
    eventually(lambda: new in client_certs(station.csms, mark), timeout=5, what="a connection with it")


def test_tc_a_14_certificate_signed_invalid_rejected(lab: Lab, words: Words, pki: Pki) -> None:
    """2.0.1 TC_A_14_CS, 1.6 TC_077_CS: a chain for another key, or an expired one for the
    station's key, is Rejected with an InvalidChargingStationCertificate (1.6:
    InvalidChargePointCertificate) security event each time."""
    bench = lab.station(lab.csms(words.version), words.version)
    ca = pki.ca("Station CA")
    mark = bench.mark()
    assert words.request_csr(bench) == "Accepted"
    csr = sign_request(bench, words, mark)["csr"]
    other_key, _ = pki.client(ca, STATION, "Generic")
    for chain in (other_key.read_text(), pki.sign_csr(ca, csr, days=0)):
        mark = bench.mark()
        assert words.certificate_signed(bench, chain) == "Rejected"
        event = security_event(bench, words, "InvalidChargingStationCertificate", mark)
        assert event["techInfo"]
    assert not (bench.dir / "var" / "certs" / "station").exists()


# == 3. AdditionalRootCertificateCheck ============================================================


def test_m05_additional_root_certificate_check(
    lab: Lab, words: Words, pki: Pki, config_root: Authority, request: pytest.FixtureRequest
) -> None:
    """AdditionalRootCertificateCheck preset true by the manufacturer: a new CSMS root must be
    signed with the old root's key (the config's here); an unrelated root is Rejected."""
    bench = lab.station(lab.csms(words.version), words.version, ca_file_line(config_root))
    assert words.read(bench, "AdditionalRootCertificateCheck") == "false"
    bench.stop()
    bench.db(
        "INSERT OR REPLACE INTO settings (key, value) VALUES (?, 'true')",
        words.setting_key("AdditionalRootCertificateCheck"),
    )
    bench.start()
    assert words.read(bench, "AdditionalRootCertificateCheck") == "true"
    unrelated = pki.ca("Unrelated Root")
    assert words.install(bench, unrelated.pem) == "Rejected"
    successor = pki.root_signed_by(config_root, "Successor CSMS Root")
    assert words.install(bench, successor.pem) == "Accepted"
    status, listed = words.installed(bench)
    assert status == "Accepted"
    assert expected_hash(successor.cert) in listed
    assert expected_hash(unrelated.cert) not in listed


# == 4. Security events and the security log ======================================================


def test_a04_startup_and_reset_security_events(lab: Lab, words: Words) -> None:
    """StartupOfTheDevice at every start (stop/start, kill -9/start, Reset); ResetOrReboot on a
    Reset, before the restarted station's StartupOfTheDevice. Both also in the security log."""
    bench = lab.station(lab.csms(words.version), words.version)
    assert events_since(bench, 0) == ["StartupOfTheDevice"]
    bench.stop()
    bench.start()  # waits for the StartupOfTheDevice of this start
    # Its delivery committed (else the event is sent again after kill -9, which is fine).
    eventually(lambda: not security_outbox(bench), timeout=5, what="an empty security outbox")
    bench.kill()
    bench.start()
    mark = bench.mark()
    words.reset(bench)
    bench.rig = SimRig.wait_for(bench.dir / "var" / "sim.sock")
    security_event(bench, words, "StartupOfTheDevice", mark, timeout=15)
    assert events_since(bench, mark) == ["ResetOrReboot", "StartupOfTheDevice"]
    assert events_since(bench, 0).count("StartupOfTheDevice") == 4
    logged = [e["type"] for e in security_log(bench)]
    assert logged == ["StartupOfTheDevice"] * 3 + ["ResetOrReboot", "StartupOfTheDevice"]


def test_a04_setting_system_time_security_event(lab: Lab, words: Words) -> None:
    """The station adopts the CSMS's time (Heartbeat, BootNotification); moving its clock is a
    SettingSystemTime event (none when the times agree)."""
    csms = lab.csms(words.version)
    bench = lab.station(csms, words.version)
    mark = bench.mark()
    assert bench.call("TriggerMessage", {"requestedMessage": "Heartbeat"})["status"] == "Accepted"
    bench.wait("Heartbeat", after=mark)
    time.sleep(0.5)
    assert "SettingSystemTime" not in events_since(bench, 0)
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    csms.set_reply("Heartbeat", {"currentTime": iso(ahead)})
    mark = bench.mark()
    assert bench.call("TriggerMessage", {"requestedMessage": "Heartbeat"})["status"] == "Accepted"
    event = security_event(bench, words, "SettingSystemTime", mark)
    assert abs((parse(event["timestamp"]) - ahead).total_seconds()) < 60  # stamped with the new time
    # The BootNotification's currentTime sets the clock too. A reconnection is no boot: 1.6
    # triggers one (back to the right time); 2.0.1 triggers none once Accepted, so the
    # station restarts (its own clock is right again then: the CSMS's moves it ahead).
    csms.set_reply("Heartbeat", None)
    now = dt.datetime.now(dt.UTC)
    if words.version == "2.0.1":
        now += dt.timedelta(hours=2)
    csms.set_reply("BootNotification", {"status": "Accepted", "currentTime": iso(now), "interval": 300})
    mark = bench.mark()
    if words.version == "1.6":
        assert bench.call("TriggerMessage", {"requestedMessage": "BootNotification"})["status"] == "Accepted"
    else:
        bench.stop()
        bench.start()
    # The event of the first change may come again first (delivery is at least once); the one
    # wanted is stamped with the new time.
    wanted = words.event("SettingSystemTime")
    bench.wait(
        "SecurityEventNotification",
        lambda p: p["type"] == wanted and abs((parse(p["timestamp"]) - now).total_seconds()) < 60,
        15,
        mark,
    )
    assert [e["type"] for e in security_log(bench)].count("SettingSystemTime") == 2


def malformed_call(unique_id: str) -> str:
    """A CALL whose payload breaks the schema (requestedMessage not in the enumeration)."""
    return json.dumps([2, unique_id, "TriggerMessage", {"requestedMessage": "Coffee"}])


def error_reply(csms: CsmsThread, unique_id: str, after: int) -> Entry:
    """The station's CALLERROR to the CALL with this unique id."""

    def found() -> list[Entry]:
        return [e for e in csms.timeline[after:] if e.kind == "error" and e.unique_id == unique_id]

    entries: list[Entry] = eventually(found, timeout=5, what=f"a CALLERROR to {unique_id}")
    return entries[0]


def test_a04_invalid_messages_security_event_once_per_minute(lab: Lab, words: Words) -> None:
    """A malformed CALL from the CSMS gets a CALLERROR and an InvalidMessages security event; a
    second one within the minute gets its CALLERROR but no second event."""
    csms = lab.csms(words.version)
    bench = lab.station(csms, words.version)
    for n in (1, 2):
        mark = bench.mark()
        csms.send_raw(STATION, malformed_call(f"bad-{n}"))
        error = error_reply(csms, f"bad-{n}", mark)
        assert error.payload["code"] in (
            "PropertyConstraintViolation",
            "FormatViolation",
            "FormationViolation",
        )
        if n == 1:
            security_event(bench, words, "InvalidMessages", mark, timeout=5)
        else:
            quiet(bench, "SecurityEventNotification", mark, 1.5)
    assert events_since(bench, 0).count("InvalidMessages") == 1


def test_a04_security_events_queued_offline_survive_restart(lab: Lab, words: Words) -> None:
    """Events raised while the CSMS cannot be reached (it answers HTTP 401 here) are queued
    persistently, survive kill -9 and a new start, and are delivered in order once connected."""
    csms = lab.csms(words.version)
    bench = lab.station(csms, words.version)
    eventually(lambda: not security_outbox(bench), timeout=5, what="the startup event's delivery committed")
    csms.set_passwords({STATION: PASSWORD})  # the station (profile 0) sends none: 401
    csms.disconnect(STATION)
    eventually(lambda: len(security_outbox(bench)) == 1, timeout=10, what="the 401 event queued")
    bench.kill()
    mark = bench.mark()
    bench.start(wait_boot=False)
    eventually(lambda: len(security_outbox(bench)) == 3, timeout=10, what="3 events queued")
    queued = security_outbox(bench)
    failed = "FailedToAuthenticateAtCsms"
    assert [e["type"] for e in queued] == [failed, "StartupOfTheDevice", failed]
    assert all(e.kind == "refused" for e in csms.timeline[mark:] if e.kind in ("refused", "connect"))

    csms.set_passwords(None)
    eventually(
        lambda: len(calls_since(bench, "SecurityEventNotification", mark)) >= 3, timeout=15, what="3 events"
    )
    time.sleep(0.5)
    delivered = [e.payload for e in calls_since(bench, "SecurityEventNotification", mark)]
    assert delivered == [
        {"type": words.event(e["type"]), "timestamp": e["timestamp"], "techInfo": e["techInfo"]}
        for e in queued
    ]
    stamps = [parse(p["timestamp"]) for p in delivered]  # type: ignore[index]
    assert stamps == sorted(stamps)
    eventually(lambda: not security_outbox(bench), timeout=5, what="an empty security outbox")
    assert [e["type"] for e in security_log(bench)] == ["StartupOfTheDevice", *[e["type"] for e in queued]]


# -- GetLog SecurityLog --------------------------------------------------------------------------


@dataclass
class UploadServer:
    """Accepts multipart POST uploads; a path under /hold/ is not answered until ``release``."""

    uploads: list[tuple[str, str, bytes]] = field(default_factory=list)  # (path, filename, content)
    held: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: http.server.ThreadingHTTPServer | None = None
    tls: ssl.SSLContext | None = None  # HTTPS with this server context

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                if self.path.startswith("/hold/"):
                    owner.held.append(self.path)
                    owner.release.wait(20)
                    return
                body = self.rfile.read(int(self.headers["Content-Length"]))
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = email.message_from_bytes(head + body, policy=email.policy.HTTP)
                for part in message.iter_parts():  # type: ignore[attr-defined]
                    if part.get_filename():
                        owner.uploads.append((self.path, part.get_filename(), part.get_payload(decode=True)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:  # a refused handshake fails the accept, which the server skips
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def uploads() -> Iterator[UploadServer]:
    server = UploadServer()
    server.start()
    yield server
    server.stop()


def get_log(bench: Bench, request_id: int, location: str, **window: str) -> dict[str, Any]:
    payload = {
        "logType": "SecurityLog",
        "requestId": request_id,
        "log": {"remoteLocation": location, **window},
    }
    return bench.call("GetLog", payload)


def log_statuses(bench: Bench, after: int) -> list[tuple[str, Any]]:
    return [
        (p["status"], p.get("requestId"))  # type: ignore[union-attr]
        for p in (e.payload for e in calls_since(bench, "LogStatusNotification", after))
    ]


def test_tc_n_35_get_security_log(lab: Lab, words: Words, uploads: UploadServer) -> None:
    """2.0.1 TC_N_35_CS (Security Log), 1.6 TC_079_CS: GetLog SecurityLog uploads the security
    log's entries of the window asked for, as JSON lines, to a file ending "-security.log"."""
    csms = lab.csms(words.version)
    bench = lab.station(csms, words.version)
    startup = bench.calls("SecurityEventNotification")[0]
    assert startup["type"] == "StartupOfTheDevice"
    time.sleep(1.2)
    mark = bench.mark()
    csms.send_raw(STATION, malformed_call("bad-1"))
    invalid = security_event(bench, words, "InvalidMessages", mark)
    start, later = parse(startup["timestamp"]), parse(invalid["timestamp"])
    assert (later - start).total_seconds() >= 1.0

    # A window with the startup only.
    middle = start + (later - start) / 2
    mark = bench.mark()
    reply = get_log(
        bench,
        7,
        f"{uploads.url}/logs/",
        oldestTimestamp=iso(start - dt.timedelta(seconds=5)),
        latestTimestamp=iso(middle),
    )
    assert reply["status"] == "Accepted"
    assert reply["filename"].endswith("-security.log")
    bench.wait("LogStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    assert log_statuses(bench, mark) == [("Uploading", 7), ("Uploaded", 7)]
    path, name, content = uploads.uploads[-1]
    assert (path, name) == ("/logs/", reply["filename"])
    lines = [json.loads(line) for line in content.decode().splitlines()]
    assert lines == [
        {"type": "StartupOfTheDevice", "timestamp": startup["timestamp"], "techInfo": startup["techInfo"]}
    ]

    # No window: everything so far. (A GetLog right after Uploaded may meet the finished upload
    # still "running": see test_tc_n_36_get_log_right_after_uploaded_accepted.)
    time.sleep(0.3)
    mark = bench.mark()
    assert get_log(bench, 8, f"{uploads.url}/logs/")["status"] == "Accepted"
    bench.wait("LogStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    lines = [json.loads(line) for line in uploads.uploads[-1][2].decode().splitlines()]
    assert [(e["type"], e["timestamp"]) for e in lines] == [
        ("StartupOfTheDevice", startup["timestamp"]),
        ("InvalidMessages", invalid["timestamp"]),
    ]


def test_n01_fr_15_https_upload_trusts_the_installed_csms_root(lab: Lab, pki: Pki) -> None:
    """N01.FR.15: "The Charging Station SHALL at least support the CSMS trust chain for secure
    transfer": an HTTPS log store whose certificate the installed CSMSRootCertificate signed (and
    no CA of the operating system) takes the upload; one signed by an unknown CA -> UploadFailure."""
    words = Words("2.0.1")
    bench = lab.station(lab.csms(words.version), words.version)
    installed, unknown = pki.ca("Installed CSMS Root"), pki.ca("Unknown Root")
    assert words.install(bench, installed.pem) == "Accepted"
    servers = [UploadServer(tls=server_context(*pki.server(ca))) for ca in (installed, unknown)]
    for server in servers:
        server.start()
    try:
        for request_id, (server, outcome) in enumerate(
            zip(servers, ("Uploaded", "UploadFailure"), strict=True)
        ):
            mark = bench.mark()
            payload = {"logType": "DiagnosticsLog", "requestId": request_id, "retries": 0}
            reply = bench.call("GetLog", {**payload, "log": {"remoteLocation": f"{server.url}/logs/"}})
            assert reply["status"] == "Accepted"
            bench.wait(
                "LogStatusNotification", lambda p, want=outcome: p["status"] == want, after=mark, timeout=15
            )
            assert log_statuses(bench, mark) == [("Uploading", request_id), (outcome, request_id)]
        assert len(servers[0].uploads) == 1
        assert servers[1].uploads == []
    finally:
        for server in servers:
            server.stop()


def test_tc_n_36_get_security_log_second_request_accepted_canceled(
    lab: Lab, words: Words, uploads: UploadServer
) -> None:
    """2.0.1 TC_N_36_CS: a GetLog while one uploads -> AcceptedCanceled; the first upload is
    cancelled and the second one completes."""
    bench = lab.station(lab.csms(words.version), words.version)
    mark = bench.mark()
    assert get_log(bench, 1, f"{uploads.url}/hold/")["status"] == "Accepted"
    bench.wait("LogStatusNotification", lambda p: p["status"] == "Uploading", after=mark)
    eventually(lambda: uploads.held, timeout=5, what="the first upload to start")
    reply = get_log(bench, 2, f"{uploads.url}/logs/")
    assert reply["status"] == "AcceptedCanceled"
    bench.wait("LogStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    uploads.release.set()
    time.sleep(0.5)
    statuses = log_statuses(bench, mark)
    assert (
        ("Uploaded", 2) in statuses
        and ("Uploaded", 1) not in statuses
        and ("UploadFailure", 1) not in statuses
    )
    assert [(p, n) for p, n, _ in uploads.uploads] == [("/logs/", reply["filename"])]


def send_soon(csms: CsmsThread, frame: str) -> None:
    """From a reply callable (on the CSMS's loop): send ``frame`` to the station as soon as the
    loop is free, i.e. before the answer being made (it is schema-checked in a worker thread)."""
    task = asyncio.get_running_loop().create_task(csms.csms.station(STATION).send_raw(frame))
    _background.append(task)


_background: list[asyncio.Task[None]] = []


def test_tc_n_36_get_log_right_after_uploaded_accepted(lab: Lab, words: Words, uploads: UploadServer) -> None:
    """N01.FR.12: AcceptedCanceled is for a GetLog while an upload is in progress. Once the
    station has reported Uploaded the upload is over: the CSMS's next GetLog (sent here as soon
    as the Uploaded notification arrives) is Accepted."""
    csms = lab.csms(words.version)
    bench = lab.station(csms, words.version)
    location = f"{uploads.url}/logs/"
    second = {"logType": "SecurityLog", "requestId": 2, "log": {"remoteLocation": location}}
    frame = json.dumps([2, "getlog-2", "GetLog", second])
    armed = [True]

    def reply(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["status"] == "Uploaded" and armed:
            armed.clear()
            send_soon(csms, frame)
        return {}

    csms.set_reply("LogStatusNotification", reply)
    mark = bench.mark()
    assert get_log(bench, 1, location)["status"] == "Accepted"
    answer = eventually(
        lambda: [e for e in csms.timeline[mark:] if e.kind == "result" and e.unique_id == "getlog-2"],
        timeout=10,
        what="the answer to the second GetLog",
    )[0]
    assert answer.payload["status"] == "Accepted", answer.payload  # type: ignore[index]


def test_tc_n_36_cancelled_upload_reported_accepted_canceled(lab: Lab, uploads: UploadServer) -> None:
    """2.0.1 TC_N_36_CS step 7: the station reports the cancelled upload with LogStatusNotification
    AcceptedCanceled and the first request's id, then Uploading/Uploaded for the second."""
    bench = lab.station(lab.csms("2.0.1"), "2.0.1")
    mark = bench.mark()
    assert get_log(bench, 1, f"{uploads.url}/hold/")["status"] == "Accepted"
    bench.wait("LogStatusNotification", lambda p: p["status"] == "Uploading", after=mark)
    eventually(lambda: uploads.held, timeout=5, what="the first upload to start")
    assert get_log(bench, 2, f"{uploads.url}/logs/")["status"] == "AcceptedCanceled"
    bench.wait("LogStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    assert log_statuses(bench, mark) == [
        ("Uploading", 1),
        ("AcceptedCanceled", 1),
        ("Uploading", 2),
        ("Uploaded", 2),
    ]


def test_a04_security_log_file_private(lab: Lab, words: Words) -> None:
    """The security log is JSON lines {type, timestamp, techInfo} and readable by its owner only."""
    bench = lab.station(lab.csms(words.version), words.version)
    path = bench.dir / "var" / "security.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (entry,) = security_log(bench)
    assert set(entry) == {"type", "timestamp", "techInfo"} and entry["type"] == "StartupOfTheDevice"
