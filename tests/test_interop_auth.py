"""OCPP 1.6 authorization as real CSMSs and the OCA test cases expect it, end to end
against the development CSMS with the daemon on simulated hardware (issue 17).

Card before plug (TC_004_1 / TC_004_2), the parent id tag from StartTransaction.conf,
an expiry date that does not overrule the status, an invalid start answer that stops the
energy, and the version of an empty local list.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

# The fixtures `bench` and `csms` come from tests/conftest.py (tests.ocpp_harness).
from tests.ocpp_harness import TOKEN, Bench

OTHER = "0A0B0C0D"  # a second card of the same group
GROUP = "GROUP01"

# -- parent id tag from StartTransaction.conf ---------------------------------------------------


def test_parent_id_tag_from_start_transaction_conf_lets_a_group_card_stop(bench: Bench) -> None:
    """1.6 section 3.5: the parentIdTag may come with StartTransaction.conf (not only with
    Authorize.conf); another card with the same parent then stops the transaction."""

    def authorize(payload: dict[str, Any]) -> dict[str, Any]:
        info = {"status": "Accepted"}
        if payload["idTag"] == OTHER:
            info["parentIdTag"] = GROUP
        return {"idTagInfo": info}

    bench.csms.set_reply("Authorize", authorize)
    bench.csms.set_reply(
        "StartTransaction",
        {"transactionId": 4711, "idTagInfo": {"status": "Accepted", "parentIdTag": GROUP}},
    )
    bench.charge()
    mark = bench.mark()
    bench.sim().swipe(OTHER)
    stop = bench.wait("StopTransaction", after=mark)
    assert (stop["transactionId"], stop["reason"], stop["idTag"]) == (4711, "Local", OTHER)
    bench.status(1, "Finishing", after=mark)


# -- the status decides, not the expiry date ------------------------------------------------------


def test_authorize_accepted_with_expiry_date_now_is_accepted(bench: Bench) -> None:
    """IdTagInfo.expiryDate is "the date at which idTag should be removed from the
    Authorization Cache" (1.6 section 7.23): an Accepted answer that expires now still
    starts the transaction."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    expiry = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    bench.csms.set_reply("Authorize", {"idTagInfo": {"status": "Accepted", "expiryDate": expiry}})
    start = bench.charge()
    assert start["idTag"] == TOKEN


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
