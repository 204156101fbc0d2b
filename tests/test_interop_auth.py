"""OCPP 1.6 authorization as real CSMSs and the OCA test cases expect it, end to end
against the development CSMS with the daemon on simulated hardware (issue 17).

Card before plug (TC_004_1 / TC_004_2), the parent id tag from StartTransaction.conf,
an expiry date that does not overrule the status, an invalid start answer that stops the
energy, and the version of an empty local list.
"""

from __future__ import annotations

from typing import Any

# The fixtures `bench` and `csms` come from tests/conftest.py (tests.ocpp_harness).
from tests.ocpp_harness import TOKEN, Bench

# -- the local list version ------------------------------------------------------------------


def test_get_local_list_version_is_0_after_a_full_update_with_an_empty_list(bench: Bench) -> None:
    """1.6 section 5.10: "A version number of 0 (zero) SHALL be used to indicate that the
    local authorization list is empty"."""

    def send(version: int, entries: list[dict[str, Any]]) -> str:
        payload = {"listVersion": version, "updateType": "Full", "localAuthorizationList": entries}
        status: str = bench.call("SendLocalList", payload)["status"]
        return status

    def version() -> int:
        number: int = bench.call("GetLocalListVersion", {})["listVersion"]
        return number

    assert version() == 0
    assert send(3, [{"idTag": TOKEN, "idTagInfo": {"status": "Accepted"}}]) == "Accepted"
    assert version() == 3
    assert send(4, []) == "Accepted"
    assert version() == 0
    assert bench.db("SELECT count(*) FROM local_list") == [(0,)]
