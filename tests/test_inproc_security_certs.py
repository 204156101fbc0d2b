"""The 2.0.1 client certificate signing flow's repeats, in-process (``tests.inproc``; moved
from test_security_certs.py): A02.FR.17-18 (a CSR asked again with a doubling wait while no
CertificateSigned comes) and TC_A_15_CS (a rejected CSR is not asked again). The waits are
virtual seconds. Certificates, TLS and the security log stay in test_security_certs.py.
"""

from __future__ import annotations

import itertools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hil.csms import Entry
from tests.inproc import STATION_ID, Bench, set_variables, station


async def request_csr(b: Bench) -> str:
    """Ask the station for a new client certificate (it answers with SignCertificate)."""
    reply = await b.call("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    return str(reply["status"])


def calls_since(b: Bench, action: str, after: int) -> list[Entry]:
    return [
        e
        for e in b.csms.timeline[after:]
        if e.kind == "call" and e.direction == "in" and e.action == action and e.station == STATION_ID
    ]


async def quiet(b: Bench, action: str, after: int, seconds: float) -> None:
    """The station sends no such CALL for ``seconds``."""
    with pytest.raises(TimeoutError):
        await b.wait(action, timeout=seconds, after=after)


def check_csr(csr_pem: str, organization: str) -> x509.CertificateSigningRequest:
    """The CSR the station sent: EC P-256, signed, CN = the station id, O = the operator."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [STATION_ID]
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [organization]
    return csr


@station(version="2.0.1")
async def test_a02_sign_certificate_repeated_without_certificate_signed(b: Bench) -> None:
    """2.0.1 A02.FR.17-18: without CertificateSigned the station asks again after
    CertSigningWaitMinimum, doubling the wait, CertSigningRepeatTimes times, then stops."""
    await set_variables(
        b,
        ("SecurityCtrlr", "CertSigningWaitMinimum", "1"),
        ("SecurityCtrlr", "CertSigningRepeatTimes", "2"),
    )
    mark = b.mark()
    assert await request_csr(b) == "Accepted"
    await b.eventually(lambda: len(calls_since(b, "SignCertificate", mark)) >= 3, timeout=6, what="3 CSRs")
    third = len(b.csms.timeline)
    await quiet(b, "SignCertificate", third, 4.6)
    sent = calls_since(b, "SignCertificate", mark)
    assert len(sent) == 3
    gaps = [round(later.t - earlier.t, 1) for earlier, later in itertools.pairwise(sent)]
    assert 0.9 <= gaps[0] <= 1.6 and 1.9 <= gaps[1] <= 2.6, gaps
    for entry in sent:
        check_csr(entry.payload["csr"], "Generic")  # type: ignore[index]


@station(version="2.0.1")
async def test_tc_a_15_sign_certificate_rejected_not_repeated(b: Bench) -> None:
    """2.0.1 TC_A_15_CS: the CSMS rejects the CSR -> the station does not ask again."""
    await set_variables(b, ("SecurityCtrlr", "CertSigningWaitMinimum", "1"))
    b.csms.set_reply("SignCertificate", {"status": "Rejected"})
    mark = b.mark()
    assert await request_csr(b) == "Accepted"
    await b.wait("SignCertificate", after=mark)
    await quiet(b, "SignCertificate", b.mark(), 1.8)  # a repeat would come after 1 s
    assert len(calls_since(b, "SignCertificate", mark)) == 1
