"""OCPP 1.6 authorization as real CSMSs and the OCA test cases expect it, in-process
(``tests.inproc``) against the development CSMS (issue 17; moved from test_interop_auth.py).

Card before plug (TC_004_1 / TC_004_2), the parent id tag from StartTransaction.conf,
an expiry date that does not overrule the status, an invalid start answer that stops the
energy, and the version of an empty local list.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.inproc import TOKEN, Bench, station, virtual_now

OTHER = "0A0B0C0D"  # a second card of the same group
GROUP = "GROUP01"


async def configure(b: Bench, **keys: str) -> None:
    for key, value in keys.items():
        reply = await b.call("ChangeConfiguration", {"key": key, "value": value})
        assert reply["status"] == "Accepted", f"ChangeConfiguration {key}={value}: {reply}"


def statuses(b: Bench, after: int) -> list[str]:
    """The connector 1 statuses reported since timeline index ``after``, in order."""
    return [
        e.payload["status"]  # type: ignore[index]
        for e in b.csms.timeline[after:]
        if e.kind == "call"
        and e.direction == "in"
        and e.action == "StatusNotification"
        and e.payload["connectorId"] == 1  # type: ignore[index]
    ]


async def no_call(b: Bench, action: str, after: int, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await b.wait(action, timeout=seconds, after=after)


# -- card before plug ----------------------------------------------------------------------


@station()
async def test_tc_004_1_card_before_plug_goes_preparing(b: Bench) -> None:
    """1.6 section 4.9, Preparing: "Typically a Connector is in preparing state when a user
    presents a tag, inserts a cable or a vehicle occupies the parking bay"."""
    mark = b.mark()
    b.sim.swipe(TOKEN)
    await b.wait("Authorize", lambda p: p["idTag"] == TOKEN, after=mark)
    await b.status(1, "Preparing", after=mark)
    plug = b.mark()
    b.sim.plug(1)
    start = await b.wait("StartTransaction", after=plug)
    assert start["idTag"] == TOKEN
    b.sim.charge(1, max_current_a=16)
    await b.status(1, "Charging", after=plug)
    reported = statuses(b, mark)
    assert reported[0] == "Preparing" and "Available" not in reported, reported


@station()
async def test_tc_004_2_card_before_plug_back_to_available_after_connection_timeout(b: Bench) -> None:
    """No EV within ConnectionTimeOut: the connector is Available again and a later EV
    starts nothing with that card."""
    await configure(b, ConnectionTimeOut="3")
    mark = b.mark()
    b.sim.swipe(TOKEN)
    await b.status(1, "Preparing", after=mark)
    await b.status(1, "Available", after=mark, timeout=10)
    plug = b.mark()
    b.sim.plug(1)
    await b.status(1, "Preparing", after=plug)
    await no_call(b, "StartTransaction", plug, 1.5)
    assert statuses(b, mark) == ["Preparing", "Available", "Preparing"]


# -- parent id tag from StartTransaction.conf ---------------------------------------------------


@station()
async def test_parent_id_tag_from_start_transaction_conf_lets_a_group_card_stop(b: Bench) -> None:
    """1.6 section 3.5: the parentIdTag may come with StartTransaction.conf (not only with
    Authorize.conf); another card with the same parent then stops the transaction."""

    def authorize(payload: dict[str, Any]) -> dict[str, Any]:
        info = {"status": "Accepted"}
        if payload["idTag"] == OTHER:
            info["parentIdTag"] = GROUP
        return {"idTagInfo": info}

    b.csms.set_reply("Authorize", authorize)
    b.csms.set_reply(
        "StartTransaction",
        {"transactionId": 4711, "idTagInfo": {"status": "Accepted", "parentIdTag": GROUP}},
    )
    await b.charge()
    mark = b.mark()
    b.sim.swipe(OTHER)
    stop = await b.wait("StopTransaction", after=mark)
    assert (stop["transactionId"], stop["reason"], stop["idTag"]) == (4711, "Local", OTHER)
    await b.status(1, "Finishing", after=mark)


# -- the status decides, not the expiry date ------------------------------------------------------


@station()
async def test_authorize_accepted_with_expiry_date_now_is_accepted(b: Bench) -> None:
    """IdTagInfo.expiryDate is "the date at which idTag should be removed from the
    Authorization Cache" (1.6 section 7.23): an Accepted answer that expires now still
    starts the transaction."""
    now = virtual_now() - timedelta(seconds=1)
    expiry = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    b.csms.set_reply("Authorize", {"idTagInfo": {"status": "Accepted", "expiryDate": expiry}})
    start = await b.charge()
    assert start["idTag"] == TOKEN


# -- an invalid start answer stops the energy --------------------------------------------------


async def invalid_start(b: Bench) -> int:
    """Authorize says Accepted, StartTransaction.conf says Invalid; the transaction's id."""
    b.csms.set_reply("Authorize", {"idTagInfo": {"status": "Accepted"}})
    b.csms.auth[TOKEN] = "Invalid"
    mark = b.mark()
    b.sim.plug(1)
    b.sim.swipe(TOKEN)
    b.sim.charge(1, max_current_a=16)
    await b.wait("StartTransaction", after=mark)
    return max(b.csms.transactions)


@station()
async def test_start_transaction_invalid_without_stop_on_invalid_id_stops_energy_not_transaction(
    b: Bench,
) -> None:
    """1.6 section 3.5 / StopTransactionOnInvalidId = false: the transaction goes on, but
    the Charge Point stops the energy delivery (SuspendedEVSE) until the EV leaves."""
    await configure(b, StopTransactionOnInvalidId="false")
    mark = b.mark()
    tx_id = await invalid_start(b)
    await b.status(1, "SuspendedEVSE", after=mark)
    status = await b.sim.wait_until(lambda s: not s["pwm"] and s["offered_a"] == 0, timeout=10)
    assert status["transaction_id"] == str(tx_id)
    b.sim.suspend(1)  # the EV answers the withdrawn PWM
    await b.sim.wait_until(lambda s: not s["contactor_closed"], timeout=10)
    await asyncio.sleep(1.0)
    assert b.calls("StopTransaction") == []
    assert b.sim.status(1)["transaction_id"] == str(tx_id)
    unplug = b.mark()
    b.sim.unplug(1)
    stop = await b.wait("StopTransaction", after=unplug)
    assert (stop["transactionId"], stop["reason"]) == (tx_id, "EVDisconnected")


@station()
async def test_start_transaction_invalid_with_stop_on_invalid_id_deauthorizes(b: Bench) -> None:
    """StopTransactionOnInvalidId = true (the default): the transaction is stopped, DeAuthorized."""
    mark = b.mark()
    tx_id = await invalid_start(b)
    stop = await b.wait("StopTransaction", after=mark)
    assert (stop["transactionId"], stop["reason"]) == (tx_id, "DeAuthorized")
    await b.sim.wait_until(lambda s: not s["pwm"] and s["transaction_id"] is None, timeout=10)


# -- the local list version ------------------------------------------------------------------


@station()
async def test_get_local_list_version_is_0_after_a_full_update_with_an_empty_list(b: Bench) -> None:
    """1.6 section 5.10: "A version number of 0 (zero) SHALL be used to indicate that the
    local authorization list is empty"."""

    async def send(version: int, entries: list[dict[str, Any]]) -> str:
        payload = {"listVersion": version, "updateType": "Full", "localAuthorizationList": entries}
        status: str = (await b.call("SendLocalList", payload))["status"]
        return status

    async def version() -> int:
        number: int = (await b.call("GetLocalListVersion", {}))["listVersion"]
        return number

    assert await version() == 0
    assert await send(3, [{"idTag": TOKEN, "idTagInfo": {"status": "Accepted"}}]) == "Accepted"
    assert await version() == 3
    assert await send(4, []) == "Accepted"
    assert await version() == 0
    assert b.db("SELECT count(*) FROM local_list") == [(0,)]
