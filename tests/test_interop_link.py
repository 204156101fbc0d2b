"""The link to the CSMS as real CSMSs and the OCA test cases expect (issue 17).

- A reconnection is not a boot: 1.6 §4.2 "The Charge Point SHALL send a BootNotification.req
  PDU each time it boots or reboots"; 2.0.1 B01 (BootNotificationRequest at start-up, with
  its true ``reason``). A boot not yet Accepted is completed after a reconnection; a change of
  version (``ocpp.version = "auto"``) is a new registration.
- Statuses: after a boot the CSMS learns every connector (1.6 §4.9 connector 0 and each
  connector; 2.0.1 B01.FR.05 / G01 each EVSE/connector); after a reconnection only those that
  differ from what it last got.
- SIGTERM ends the daemon within 2 s even while a Reset is being handled.
- ``ocpp.version = "auto"`` on a station that never connected: no "switch" warning, and the
  sessions recorded meanwhile reach the CSMS in the version it picks.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.ocpp.adapter import csms_of
from controller.security.credentials import Credentials
from hil.csms import CsmsThread
from tests.ocpp_harness import Bench, eventually, make_bench, set_variables, stop_all

STATION = "CP001"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[list[Bench], list[CsmsThread]]]:
    benches: list[Bench] = []
    servers: list[CsmsThread] = []
    yield benches, servers
    stop_all(benches, servers)


def start_csms(servers: list[CsmsThread], versions: tuple[str, ...], **kwargs: Any) -> CsmsThread:
    server = CsmsThread(quiet=True, versions=versions, **kwargs)
    server.start()
    servers.append(server)
    return server


def station(
    tmp_path: Path, server: CsmsThread, benches: list[Bench], name: str = "station", **config: Any
) -> Bench:
    folder = tmp_path / name
    folder.mkdir()
    bench = make_bench(folder, server, **config)
    benches.append(bench)
    return bench


def started(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]], versions: tuple[str, ...], **config: Any
) -> tuple[CsmsThread, Bench]:
    """A CSMS speaking ``versions`` and a station connected to it, booted."""
    benches, servers = lab
    server = start_csms(servers, versions)
    bench = station(tmp_path, server, benches, **config)
    bench.start()
    return server, bench


def since(bench: Bench, action: str, mark: int) -> list[dict[str, Any]]:
    return [
        e.payload  # type: ignore[misc]
        for e in bench.csms.timeline[mark:]
        if e.kind == "call" and e.direction == "in" and e.action == action
    ]


def reconnected(bench: Bench, mark: int) -> None:
    eventually(
        lambda: any(e.kind == "connect" for e in bench.csms.timeline[mark:]),
        20,
        "the station to reconnect",
    )


def go_offline(bench: Bench) -> None:
    bench.csms.csms.passwords = {}  # every attempt gets HTTP 401
    bench.csms.disconnect(STATION)
    bench.sim().wait_until(lambda s: not s["ocpp_connected"], timeout=15)


def go_online(bench: Bench) -> int:
    mark = bench.mark()
    bench.csms.csms.passwords = None
    reconnected(bench, mark)
    return mark


def heartbeat_16(bench: Bench) -> str:
    reply = bench.call("GetConfiguration", {"key": ["HeartbeatInterval"]})
    (key,) = reply["configurationKey"]
    return str(key["value"])


def heartbeat_201(bench: Bench) -> str:
    item = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    (result,) = bench.call("GetVariables", {"getVariableData": [item]})["getVariableResult"]
    return str(result["attributeValue"])


# -- no BootNotification on a reconnection --------------------------------------------------------


def test_ocpp16_reconnect_is_no_boot_and_keeps_the_heartbeat_interval(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]]
) -> None:
    server, bench = started(tmp_path, lab, ("1.6",))
    assert bench.call("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "7"}) == {
        "status": "Accepted"
    }
    mark = bench.mark()
    server.disconnect(STATION)
    reconnected(bench, mark)
    bench.sim().wait_until(lambda s: s["ocpp_connected"], timeout=10)
    assert heartbeat_16(bench) == "7"  # not the boot reply's 300
    bench.wait("Heartbeat", after=mark, timeout=12)
    assert since(bench, "BootNotification", mark) == []
    # Nothing changed while it was away: no status either.
    assert since(bench, "StatusNotification", mark) == []
    # A restart is a boot again.
    mark = bench.mark()
    bench.stop()
    bench.start()
    assert len(since(bench, "BootNotification", mark)) == 1


def test_ocpp201_reconnect_is_no_boot_and_keeps_the_heartbeat_interval(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]]
) -> None:
    server, bench = started(tmp_path, lab, ("2.0.1",), version="2.0.1")
    item = {
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "HeartbeatInterval"},
        "attributeValue": "7",
    }
    (result,) = bench.call("SetVariables", {"setVariableData": [item]})["setVariableResult"]
    assert result["attributeStatus"] == "Accepted"
    mark = bench.mark()
    server.disconnect(STATION)
    reconnected(bench, mark)
    bench.sim().wait_until(lambda s: s["ocpp_connected"], timeout=10)
    assert heartbeat_201(bench) == "7"
    bench.wait("Heartbeat", after=mark, timeout=12)
    assert since(bench, "BootNotification", mark) == []
    assert since(bench, "StatusNotification", mark) == []


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_boot_left_pending_is_completed_after_a_reconnection(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]], version: str
) -> None:
    """Pending with a long interval; the connection drops: the new one boots at once (B02)."""
    benches, servers = lab
    server = start_csms(servers, (version,))
    server.set_boot_status("Pending")
    bench = station(tmp_path, server, benches, version=version)
    bench.start(wait_boot=False)
    first = bench.wait("BootNotification")
    mark = bench.mark()
    server.set_boot_status("Accepted")
    server.disconnect(STATION)
    boot = bench.wait("BootNotification", after=mark, timeout=20)
    if version == "2.0.1":
        assert boot["reason"] == first["reason"] == "PowerUp"
        bench.status201(1, "Available", after=mark)
    else:
        bench.status(0, "Available", after=mark)
        bench.status(1, "Available", after=mark)


def test_version_auto_change_of_version_is_a_new_boot(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]]
) -> None:
    server, bench = started(tmp_path, lab, ("1.6", "2.0.1"), version="auto")
    assert "chargePointVendor" in bench.calls("BootNotification")[0]
    mark = bench.mark()
    server.csms.versions = ("2.0.1", "1.6")  # the CSMS now prefers 2.0.1
    server.disconnect(STATION)
    assert bench.wait("BootNotification", after=mark, timeout=20)["reason"] == "PowerUp"
    bench.status201(1, "Available", after=mark)
    mark = bench.mark()
    server.csms.versions = ("1.6",)  # and back: registered again in 1.6
    server.disconnect(STATION)
    assert "chargePointVendor" in bench.wait("BootNotification", after=mark, timeout=20)
    bench.status(1, "Available", after=mark)


# -- statuses after a (re)connection --------------------------------------------------------------


def test_ocpp16_statuses_after_boot_and_after_reconnection(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]]
) -> None:
    """After the boot: connector 0 and each connector; after a reconnection: the one that changed."""
    _, bench = started(tmp_path, lab, ("1.6",), evses=2)
    for connector in (0, 1, 2):
        bench.status(connector, "Available")
    go_offline(bench)
    bench.sim().plug(2)
    bench.sim().wait_until(lambda s: s["connector_status"] == "Preparing", evse=2)
    mark = go_online(bench)
    bench.status(2, "Preparing", after=mark)
    sent = since(bench, "StatusNotification", mark)
    assert [p["connectorId"] for p in sent] == [2], sent
    assert since(bench, "BootNotification", mark) == []


def test_ocpp201_statuses_after_boot_and_after_reconnection(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]]
) -> None:
    _, bench = started(tmp_path, lab, ("2.0.1",), evses=2, version="2.0.1")
    for evse in (1, 2):
        bench.status201(evse, "Available")
    go_offline(bench)
    bench.sim().plug(2)
    bench.sim().wait_until(lambda s: s["connector_status"] == "Occupied", evse=2)
    mark = go_online(bench)
    bench.status201(2, "Occupied", after=mark)
    sent = since(bench, "StatusNotification", mark)
    assert [(p["evseId"], p["connectorId"]) for p in sent] == [(2, 1)], sent
    assert since(bench, "BootNotification", mark) == []


# -- SIGTERM wins over a reset ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_sigterm_during_a_reset_ends_the_daemon_within_2_s(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]], version: str
) -> None:
    _, bench = started(tmp_path, lab, (version,), version=version, auth_mode="free")
    bench.sim().plug(1)
    bench.sim().charge(1)
    bench.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    assert bench.proc is not None
    if version == "1.6":
        assert bench.call("Reset", {"type": "Soft"}) == {"status": "Accepted"}
    else:  # a transaction runs: the reset waits for it to end
        assert bench.call("Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
    bench.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    # Re-executed in place it would keep its pid and run on.
    assert bench.proc.wait(timeout=5) == 0
    assert time.monotonic() - sent < 2.0
    if version == "2.0.1":  # started again by hand (or systemd): a power-up, not the reset
        mark = bench.mark()
        bench.start()
        assert since(bench, "BootNotification", mark)[0]["reason"] == "PowerUp"


def test_b11_sigterm_right_after_a_reset_leaves_no_remote_reset_behind(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]]
) -> None:
    """B11/B12: BootNotification reason RemoteReset only for a restart the Reset caused. SIGTERM
    while the station shuts down for the Reset cancels the restart: the next start is PowerUp."""
    _, bench = started(tmp_path, lab, ("2.0.1",), version="2.0.1", auth_mode="free")
    bench.sim().plug(1)
    bench.sim().charge(1)
    bench.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    assert bench.proc is not None
    assert bench.call("Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    bench.proc.send_signal(signal.SIGTERM)  # while the transaction is being ended
    assert bench.proc.wait(timeout=5) == 0
    assert bench.db("SELECT value FROM settings WHERE key = 'ocpp201.boot_reason'") in ([], [("",)])
    mark = bench.mark()
    bench.start()
    assert since(bench, "BootNotification", mark)[0]["reason"] == "PowerUp"


# -- version "auto": the first connection ----------------------------------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_version_auto_sessions_before_the_first_connection_are_delivered(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]], version: str
) -> None:
    benches, servers = lab
    server = start_csms(servers, (version,), passwords={})  # refuses the station at first
    bench = station(tmp_path, server, benches, version="auto", auth_mode="free")
    bench.start(wait_boot=False)
    bench.sim().plug(1)
    bench.sim().charge(1)
    bench.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    bench.sim().unplug(1)
    bench.sim().wait_until(lambda s: s["transaction_id"] is None, timeout=10)
    server.csms.passwords = None
    bench.wait("BootNotification", timeout=20)
    if version == "1.6":
        start = bench.wait("StartTransaction", timeout=15)
        stop = bench.wait("StopTransaction", timeout=15)
        assert start["idTag"] == "FREE" and stop["reason"] == "EVDisconnected"
        assert bench.calls("TransactionEvent") == []
    else:
        started = bench.wait("TransactionEvent", lambda p: p["eventType"] == "Started", timeout=15)
        ended = bench.wait("TransactionEvent", lambda p: p["eventType"] == "Ended", timeout=15)
        tx = started["transactionInfo"]["transactionId"]
        assert ended["transactionInfo"]["transactionId"] == tx
    log = bench.log.read_text()
    assert "last time" not in log and "dropped" not in log, log
    # From now on the version is known: a restart keeps it, without a warning either.
    bench.stop()
    bench.start()
    assert "last time" not in bench.log.read_text()


# -- A01: a new Basic auth password on trial ---------------------------------------------------------


def test_a01_new_password_on_trial_until_a_connection_confirms_it(tmp_path: Path) -> None:
    """The end-to-end cases are in test_security_tls (TC_073_CS, TC_A_09_CS); this is the rule."""
    old, new, newer = "config-password-0001", "csms-password-00002", "csms-password-00003"
    creds = Credentials(tmp_path, old)
    creds.set_password(new)
    assert creds.password() == new
    creds.refused()  # HTTP 401 with the new one: the previous one next
    assert creds.password() == old
    creds.refused()  # and the new one again after that
    assert creds.password() == new
    creds.connected(new)  # confirmed: the previous one is forgotten
    creds.refused()
    assert creds.password() == new and old not in creds.path.read_text()
    creds.set_password(newer)
    creds.refused()
    creds.connected(new)  # the CSMS never took the newer one
    assert Credentials(tmp_path, old).password() == new
    creds.set_password(newer)
    creds.refused()
    assert Credentials(tmp_path, old).password() == newer  # a restart tries the new one first


# -- a BootNotification for each CSMS ---------------------------------------------------------------


def test_csms_of_same_csms_whatever_the_scheme() -> None:
    """The CSMS a boot was accepted by: a raised security profile (ws -> wss) reaches the same one."""
    assert csms_of("ws://csms.example:8080/ocpp/CP001") == csms_of("wss://csms.example:8080/ocpp/CP001/")
    assert csms_of("ws://csms.example:8080/ocpp/CP001") != csms_of("ws://other.example:8080/ocpp/CP001")
    assert csms_of("ws://csms.example:8080/ocpp/CP001") != csms_of("ws://csms.example:9000/ocpp/CP001")


def test_b01_b02_a_network_slot_to_another_csms_boots_there_first(
    tmp_path: Path, lab: tuple[list[Bench], list[CsmsThread]]
) -> None:
    """2.0.1 B01/B02 (1.6 §4.2): a CSMS gets a BootNotification before any other message.

    Slot 0 fails, the station moves to slot 1, another CSMS, without a restart: it boots
    there first; and again at the first one when it comes back to it."""
    benches, servers = lab
    first = start_csms(servers, ("2.0.1",))
    second = start_csms(servers, ("2.0.1",))
    bench = station(tmp_path, first, benches, version="2.0.1")
    bench.start()
    slot = {
        "configurationSlot": 1,
        "connectionData": {
            "ocppVersion": "OCPP20",
            "ocppTransport": "JSON",
            "ocppCsmsUrl": second.url,
            "messageTimeout": 30,
            "securityProfile": 0,
            "ocppInterface": "Wired0",
        },
    }
    assert bench.call("SetNetworkProfile", slot) == {"status": "Accepted"}
    set_variables(
        bench,
        ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", "1"),
        ("OCPPCommCtrlr", "NetworkConfigurationPriority", "0,1"),
    )
    first.csms.passwords = {}  # slot 0 refuses the station from now on
    first.disconnect(STATION)
    calls = eventually(
        lambda: [e for e in second.timeline if e.kind == "call" and e.direction == "in"][:2] or None,
        30,
        "the station at the second CSMS",
    )
    assert calls[0].action == "BootNotification", [e.action for e in calls]
    assert second.wait_for("StatusNotification", station=STATION, timeout=10).payload["evseId"] == 1
    # Back to slot 0: the first CSMS last heard a boot before the other one did; it gets one again.
    mark = bench.mark()
    first.csms.passwords = None
    second.csms.passwords = {}
    second.disconnect(STATION)
    boot = bench.wait("BootNotification", after=mark, timeout=30)
    assert boot["reason"] == "PowerUp"
    bench.status201(1, "Available", after=mark)


def test_a01_a_connection_with_the_old_password_keeps_the_new_one_for_later(tmp_path: Path) -> None:
    """The station reconnects before the CSMS stored the new password: 401, the old one is
    accepted. The CSMS then switches over: the old one gets 401 and the new one must still be
    there to try (Security Whitepaper A01 steps 3-4; the spec is silent on the race)."""
    old, new, newer = "config-password-0001", "csms-password-00002", "csms-password-00003"
    creds = Credentials(tmp_path, old)
    creds.set_password(new)
    creds.refused()  # the CSMS has not stored it yet
    assert creds.password() == old
    creds.connected(old)
    # The old one stays in use (no 401 on every reconnection), across a restart too ...
    assert creds.password() == old
    assert Credentials(tmp_path, old).password() == old
    # ... until the CSMS switches over: a 401, and the new one is tried, and kept once it connects.
    creds = Credentials(tmp_path, old)
    creds.refused()
    assert creds.password() == new
    creds.connected(new)
    assert creds.password() == new and old not in creds.path.read_text()
    creds.refused()
    assert creds.password() == new  # nothing else to try: the old one is forgotten
    # A password set while the old one is in use replaces the one never confirmed.
    creds = Credentials(tmp_path / "again", old)
    creds.set_password(new)
    creds.refused()
    creds.connected(old)
    creds.set_password(newer)
    assert creds.password() == newer and new not in creds.path.read_text()
    creds.refused()
    assert creds.password() == old
