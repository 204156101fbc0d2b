"""OCPP 1.6 authorization as real CSMSs and the OCA test cases expect it, end to end
against the development CSMS with the daemon on simulated hardware (issue 17).

Card before plug (TC_004_1 / TC_004_2), the parent id tag from StartTransaction.conf,
an expiry date that does not overrule the status, an invalid start answer that stops the
energy, and the version of an empty local list.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

# The fixtures `bench` and `csms` come from tests/conftest.py (tests.ocpp_harness).
from tests.ocpp_harness import TOKEN, Bench

OTHER = "0A0B0C0D"  # a second card of the same group
GROUP = "GROUP01"


def configure(bench: Bench, **keys: str) -> None:
    for key, value in keys.items():
        reply = bench.call("ChangeConfiguration", {"key": key, "value": value})
        assert reply["status"] == "Accepted", f"ChangeConfiguration {key}={value}: {reply}"


def statuses(bench: Bench, after: int) -> list[str]:
    """The connector 1 statuses reported since timeline index ``after``, in order."""
    return [
        e.payload["status"]  # type: ignore[index]
        for e in bench.csms.timeline[after:]
        if e.kind == "call"
        and e.direction == "in"
        and e.action == "StatusNotification"
        and e.payload["connectorId"] == 1  # type: ignore[index]
    ]


def no_call(bench: Bench, action: str, after: int, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        bench.wait(action, timeout=seconds, after=after)


# -- card before plug ----------------------------------------------------------------------


def test_tc_004_1_card_before_plug_goes_preparing(bench: Bench) -> None:
    """1.6 section 4.9, Preparing: "Typically a Connector is in preparing state when a user
    presents a tag, inserts a cable or a vehicle occupies the parking bay"."""
    mark = bench.mark()
    bench.sim().swipe(TOKEN)
    bench.wait("Authorize", lambda p: p["idTag"] == TOKEN, after=mark)
    bench.status(1, "Preparing", after=mark)
    plug = bench.mark()
    bench.sim().plug(1)
    start = bench.wait("StartTransaction", after=plug)
    assert start["idTag"] == TOKEN
    bench.sim().charge(1, max_current_a=16)
    bench.status(1, "Charging", after=plug)
    reported = statuses(bench, mark)
    assert reported[0] == "Preparing" and "Available" not in reported, reported


def test_tc_004_2_card_before_plug_back_to_available_after_connection_timeout(bench: Bench) -> None:
    """No EV within ConnectionTimeOut: the connector is Available again and a later EV
    starts nothing with that card."""
    configure(bench, ConnectionTimeOut="3")
    mark = bench.mark()
    bench.sim().swipe(TOKEN)
    bench.status(1, "Preparing", after=mark)
    bench.status(1, "Available", after=mark, timeout=10)
    plug = bench.mark()
    bench.sim().plug(1)
    bench.status(1, "Preparing", after=plug)
    no_call(bench, "StartTransaction", plug, 1.5)
    assert statuses(bench, mark) == ["Preparing", "Available", "Preparing"]


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


# -- an invalid start answer stops the energy --------------------------------------------------


def invalid_start(bench: Bench) -> int:
    """Authorize says Accepted, StartTransaction.conf says Invalid; the transaction's id."""
    bench.csms.set_reply("Authorize", {"idTagInfo": {"status": "Accepted"}})
    bench.csms.csms.auth[TOKEN] = "Invalid"
    mark = bench.mark()
    bench.sim().plug(1)
    bench.sim().swipe(TOKEN)
    bench.sim().charge(1, max_current_a=16)
    bench.wait("StartTransaction", after=mark)
    return max(bench.csms.transactions)


def test_start_transaction_invalid_without_stop_on_invalid_id_stops_energy_not_transaction(
    bench: Bench,
) -> None:
    """1.6 section 3.5 / StopTransactionOnInvalidId = false: the transaction goes on, but
    the Charge Point stops the energy delivery (SuspendedEVSE) until the EV leaves."""
    configure(bench, StopTransactionOnInvalidId="false")
    mark = bench.mark()
    tx_id = invalid_start(bench)
    bench.status(1, "SuspendedEVSE", after=mark)
    status = bench.sim().wait_until(lambda s: not s["pwm"] and s["offered_a"] == 0, timeout=10)
    assert status["transaction_id"] == str(tx_id)
    bench.sim().suspend(1)  # the EV answers the withdrawn PWM
    bench.sim().wait_until(lambda s: not s["contactor_closed"], timeout=10)
    time.sleep(1.0)
    assert bench.calls("StopTransaction") == []
    assert bench.sim().status(1)["transaction_id"] == str(tx_id)
    unplug = bench.mark()
    bench.sim().unplug(1)
    stop = bench.wait("StopTransaction", after=unplug)
    assert (stop["transactionId"], stop["reason"]) == (tx_id, "EVDisconnected")


def test_start_transaction_invalid_with_stop_on_invalid_id_deauthorizes(bench: Bench) -> None:
    """StopTransactionOnInvalidId = true (the default): the transaction is stopped, DeAuthorized."""
    mark = bench.mark()
    tx_id = invalid_start(bench)
    stop = bench.wait("StopTransaction", after=mark)
    assert (stop["transactionId"], stop["reason"]) == (tx_id, "DeAuthorized")
    bench.sim().wait_until(lambda s: not s["pwm"] and s["transaction_id"] is None, timeout=10)


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
