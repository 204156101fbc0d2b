"""Scenario tests of the station model (controller/core/station.py).

No I/O and no clock: every test builds the ``EvseView``s the control loop would publish
and the ``MeterReading``s the meter poller would deliver, feeds them to a ``Station`` at
fixed, timezone-aware moments and checks the actions that come out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from controller.core.station import (
    FINAL_READING_WAIT,
    SAMPLE_INTERVAL,
    TOKEN_WAIT,
    Action,
    ConnectorStatus,
    EvseView,
    MeterReadWanted,
    MeterSampled,
    Permit,
    Station,
    StatusChanged,
    StopReason,
    TokenRejected,
    TransactionStarted,
    TransactionStopped,
)
from controller.ocpp.v16 import words as words16
from controller.safety.pilot import CpState, PilotMode
from controller.safety.supervisor import Fault
from drivers.base import MeterReading

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
MAX_A = 32.0
TOKEN = "04A1B2C3"
OTHER_TOKEN = "04FFFFFF"

A = TypeVar("A")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def view(
    cp: CpState,
    pilot: PilotMode = PilotMode.STEADY,
    contactor: bool = False,
    faults: Iterable[Fault] = (),
    duty: float | None = None,
) -> EvseView:
    if duty is None:
        duty = {PilotMode.STEADY: 100.0, PilotMode.PWM: 53.3, PilotMode.NEGATIVE: 0.0}[pilot]
    offered = MAX_A if pilot is PilotMode.PWM else 0.0
    return EvseView(cp, pilot, duty, offered, contactor, frozenset(faults))


UNPLUGGED = view(CpState.A)
PLUGGED = view(CpState.B)  # EV connected, no PWM yet
PLUGGED_PWM = view(CpState.B, PilotMode.PWM)  # offered, EV not requesting
CHARGING = view(CpState.C, PilotMode.PWM, contactor=True)


def reading(energy_wh: float, power_w: float = 0.0) -> MeterReading:
    return MeterReading(energy_wh, power_w, (0.0, 0.0, 0.0), (230.0, 230.0, 230.0))


def of(actions: list[Action], kind: type[A]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


def one(actions: list[Action], kind: type[A]) -> A:
    found = of(actions, kind)
    assert len(found) == 1, f"expected one {kind.__name__} in {actions}"
    return found[0]


def statuses(actions: list[Action]) -> list[tuple[ConnectorStatus, Fault | None]]:
    return [(a.status, a.fault) for a in of(actions, StatusChanged)]


def free_station(evses: int = 1, free_id: str = "FREE") -> Station:
    return Station.create({i: MAX_A for i in range(1, evses + 1)}, "free", [], free_id)


def list_station(evses: int = 1) -> Station:
    return Station.create({i: MAX_A for i in range(1, evses + 1)}, "list", [TOKEN], "FREE")


def charging(station: Station, evse_id: int = 1, energy_wh: float = 1000.0, t: float = 0.0) -> str:
    """Bring an EVSE from unplugged to charging with a persisted transaction; its id."""
    station.evse_seen(at(t), evse_id, UNPLUGGED)
    station.meter_read(at(t), evse_id, reading(energy_wh))
    actions = station.evse_seen(at(t), evse_id, PLUGGED)
    if station.auth_mode == "list":
        actions += station.token_presented(at(t), TOKEN)
    tx_id = one(actions, TransactionStarted).tx.id
    station.transaction_persisted(at(t), tx_id)
    station.evse_seen(at(t), evse_id, PLUGGED_PWM)
    station.evse_seen(at(t), evse_id, CHARGING)
    assert station.evses[evse_id].status == (ConnectorStatus.CHARGING, None)
    return tx_id


def complete_stop(
    station: Station, actions: list[Action], now: datetime, final_wh: float | None = None, evse_id: int = 1
) -> TransactionStopped:
    """Answer the MeterReadWanted of a stop as the daemon does: with a fresh reading at
    ``now``, or (``final_wh`` None) with none, ``now`` being when the station looks again."""
    assert MeterReadWanted(evse_id) in actions, f"no MeterReadWanted in {actions}"
    assert of(actions, TransactionStopped) == []
    more = station.tick(now) if final_wh is None else station.meter_read(now, evse_id, reading(final_wh))
    return one(more, TransactionStopped)


# -- free mode ---------------------------------------------------------------------------


def test_free_mode_plug_in_starts_transaction_with_free_id_and_meter_start() -> None:
    station = free_station()
    station.evse_seen(at(0), 1, UNPLUGGED)
    station.meter_read(at(0), 1, reading(1234.5))

    actions = station.evse_seen(at(1), 1, PLUGGED)

    tx = one(actions, TransactionStarted).tx
    assert tx.id_tag == "FREE"
    assert tx.evse_id == 1
    assert tx.meter_start_wh == 1234.5
    assert tx.started_at == at(1)
    assert tx.id  # every session has a local transaction id
    assert not any(p.authorized for p in of(actions, Permit))


def test_free_mode_uses_the_configured_free_id() -> None:
    station = free_station(free_id="GUEST")
    station.meter_read(at(0), 1, reading(10.0))
    actions = station.evse_seen(at(0), 1, PLUGGED)
    assert one(actions, TransactionStarted).tx.id_tag == "GUEST"


def test_no_energy_permitted_until_the_transaction_start_is_persisted() -> None:
    station = free_station()
    station.meter_read(at(0), 1, reading(0.0))
    tx_id = one(station.evse_seen(at(0), 1, PLUGGED), TransactionStarted).tx.id

    # The EV keeps asking and time passes, but the start is not on disk yet.
    before = station.evse_seen(at(1), 1, view(CpState.C))
    before += station.tick(at(2))
    before += station.meter_read(at(3), 1, reading(0.0))
    assert not any(p.authorized for p in of(before, Permit))

    after = station.transaction_persisted(at(4), tx_id)
    assert of(after, Permit) == [Permit(1, True, MAX_A)]
    # exactly once: nothing more on the next evaluation
    assert of(station.tick(at(5)), Permit) == []


def test_persisting_an_unknown_transaction_permits_nothing() -> None:
    station = free_station()
    station.meter_read(at(0), 1, reading(0.0))
    station.evse_seen(at(0), 1, PLUGGED)
    assert of(station.transaction_persisted(at(1), "not-a-transaction"), Permit) == []


def test_no_transaction_starts_before_the_first_meter_reading() -> None:
    station = free_station()
    actions = station.evse_seen(at(0), 1, UNPLUGGED)
    actions += station.evse_seen(at(1), 1, PLUGGED)
    actions += station.tick(at(2))
    actions += station.evse_seen(at(3), 1, view(CpState.C))
    assert of(actions, TransactionStarted) == []
    assert station.evses[1].status == (ConnectorStatus.PREPARING, None)

    started = one(station.meter_read(at(4), 1, reading(777.0)), TransactionStarted)
    assert started.tx.meter_start_wh == 777.0
    assert started.tx.started_at == at(4)


# -- list mode ---------------------------------------------------------------------------


def test_list_mode_allowed_token_while_plugged_authorizes_and_starts() -> None:
    station = list_station()
    station.meter_read(at(0), 1, reading(500.0))
    plug = station.evse_seen(at(0), 1, PLUGGED)
    assert of(plug, TransactionStarted) == []
    assert station.evses[1].status == (ConnectorStatus.PREPARING, None)

    actions = station.token_presented(at(5), TOKEN)
    tx = one(actions, TransactionStarted).tx
    assert (tx.id_tag, tx.meter_start_wh, tx.started_at) == (TOKEN, 500.0, at(5))
    assert of(actions, TokenRejected) == []

    assert of(station.transaction_persisted(at(6), tx.id), Permit) == [Permit(1, True, MAX_A)]


def test_list_mode_unknown_token_is_rejected_and_starts_nothing() -> None:
    station = list_station()
    station.meter_read(at(0), 1, reading(500.0))
    station.evse_seen(at(0), 1, PLUGGED)

    actions = station.token_presented(at(1), OTHER_TOKEN)

    rejected = one(actions, TokenRejected)
    assert rejected.token == OTHER_TOKEN
    assert rejected.reason
    assert of(actions, TransactionStarted) == []
    assert station.pending_token is None
    assert of(station.tick(at(2)), TransactionStarted) == []


def test_free_mode_token_is_rejected() -> None:
    station = free_station()
    station.evse_seen(at(0), 1, UNPLUGGED)
    assert one(station.token_presented(at(1), TOKEN), TokenRejected).token == TOKEN


def test_list_mode_token_before_plug_in_is_used_when_ev_plugs_within_60_s() -> None:
    station = list_station()
    station.evse_seen(at(0), 1, UNPLUGGED)
    station.meter_read(at(0), 1, reading(42.0))

    swipe = station.token_presented(at(0), TOKEN)
    assert of(swipe, TransactionStarted) == []
    assert of(station.tick(at(30)), TransactionStarted) == []

    plug_at = TOKEN_WAIT.total_seconds() - 1
    actions = station.tick(at(plug_at)) + station.evse_seen(at(plug_at), 1, PLUGGED)

    tx = one(actions, TransactionStarted).tx
    assert tx.id_tag == TOKEN
    assert station.pending_token is None  # used once


def test_list_mode_token_before_plug_in_is_dropped_after_60_s() -> None:
    station = list_station()
    station.evse_seen(at(0), 1, UNPLUGGED)
    station.meter_read(at(0), 1, reading(42.0))
    station.token_presented(at(0), TOKEN)

    station.tick(at(TOKEN_WAIT.total_seconds()))
    assert station.pending_token is None

    actions = station.evse_seen(at(61), 1, PLUGGED) + station.tick(at(62))
    assert of(actions, TransactionStarted) == []
    assert station.evses[1].status == (ConnectorStatus.PREPARING, None)


def test_list_mode_token_older_than_60_s_is_not_used_even_without_a_tick() -> None:
    station = list_station()
    station.evse_seen(at(0), 1, UNPLUGGED)
    station.meter_read(at(0), 1, reading(42.0))
    station.token_presented(at(0), TOKEN)

    actions = station.evse_seen(at(TOKEN_WAIT.total_seconds() + 0.5), 1, PLUGGED)
    assert of(actions, TransactionStarted) == []


def test_list_mode_same_token_again_stops_locally_and_finishes_until_unplug() -> None:
    station = list_station()
    tx_id = charging(station, energy_wh=100.0)
    station.meter_read(at(10), 1, reading(350.0))

    actions = station.token_presented(at(20), TOKEN)

    assert of(actions, Permit) == [Permit(1, False, 0.0)]  # energy withdrawn at once
    assert of(actions, TokenRejected) == []
    stopped = complete_stop(station, actions, at(20.5), final_wh=352.0)
    assert stopped == TransactionStopped(tx_id, 1, at(20), 352.0, StopReason.LOCAL, TOKEN)

    # The control loop drops the PWM; the EV stays plugged: Finishing, no new session.
    later = station.evse_seen(at(21), 1, view(CpState.C))
    later += station.evse_seen(at(22), 1, PLUGGED)
    later += station.meter_read(at(23), 1, reading(353.0))
    later += station.tick(at(200))
    assert of(later, TransactionStarted) == []
    assert of(later, TransactionStopped) == []  # stopped exactly once
    assert station.evses[1].status == (ConnectorStatus.FINISHING, None)

    unplug = station.evse_seen(at(300), 1, UNPLUGGED)
    assert statuses(unplug) == [(ConnectorStatus.AVAILABLE, None)]
    assert of(unplug, TransactionStopped) == []
    assert of(unplug + station.tick(at(310)), TransactionStopped) == []

    # Plugging in again needs a new identification in list mode.
    replug = station.evse_seen(at(320), 1, PLUGGED)
    assert of(replug, TransactionStarted) == []
    assert statuses(replug) == [(ConnectorStatus.PREPARING, None)]


# -- stopping ----------------------------------------------------------------------------
#
# A stop withdraws energy at once and asks for a fresh meter reading (MeterReadWanted);
# TransactionStopped follows with that reading, or with the last good reading once
# FINAL_READING_WAIT has passed without one. It carries the moment of the stop.


def test_unplug_stops_with_ev_disconnected_at_the_last_good_reading() -> None:
    station = free_station()
    tx_id = charging(station, energy_wh=1000.0)
    station.meter_read(at(30), 1, reading(1500.0, power_w=7000.0))

    actions = station.evse_seen(at(40), 1, UNPLUGGED)

    assert of(actions, Permit) == [Permit(1, False, 0.0)]
    assert statuses(actions) == [(ConnectorStatus.AVAILABLE, None)]
    assert station.evses[1].tx is None
    # no fresh reading comes: the last good one, once the wait is over
    before_deadline = station.tick(at(40) + FINAL_READING_WAIT / 2)
    assert of(before_deadline, TransactionStopped) == []
    stopped = complete_stop(station, actions + before_deadline, at(40) + FINAL_READING_WAIT)
    assert stopped == TransactionStopped(tx_id, 1, at(40), 1500.0, StopReason.EV_DISCONNECTED)


def test_unplug_stop_takes_the_fresh_reading_asked_for() -> None:
    station = free_station()
    tx_id = charging(station, energy_wh=1000.0)
    station.meter_read(at(30), 1, reading(1500.0))

    actions = station.evse_seen(at(40), 1, UNPLUGGED)
    stopped = complete_stop(station, actions, at(40.3), final_wh=1503.0)

    assert stopped == TransactionStopped(tx_id, 1, at(40), 1503.0, StopReason.EV_DISCONNECTED)


def test_free_mode_replug_after_unplug_starts_a_new_transaction_once_the_old_one_ended() -> None:
    station = free_station()
    first = charging(station, energy_wh=1000.0)
    unplug = station.evse_seen(at(40), 1, UNPLUGGED)
    # plugged again before the final reading: nothing starts while the stop is open
    assert of(station.evse_seen(at(40.5), 1, PLUGGED), TransactionStarted) == []

    actions = station.meter_read(at(41), 1, reading(1001.0))

    assert one(unplug + actions, TransactionStopped).tx_id == first
    second = one(actions, TransactionStarted).tx
    assert second.id != first
    assert second.meter_start_wh == 1001.0


def test_shutdown_stops_every_running_transaction_with_the_given_reason() -> None:
    station = free_station(evses=3)
    tx1 = charging(station, evse_id=1, energy_wh=100.0)
    tx2 = charging(station, evse_id=2, energy_wh=200.0)
    station.evse_seen(at(0), 3, UNPLUGGED)  # EVSE 3: no EV, no transaction
    station.meter_read(at(10), 2, reading(250.0))

    actions = station.shutdown(at(60), StopReason.REBOOT)

    # no waiting for a final reading: the daemon is going away
    stops = sorted(of(actions, TransactionStopped), key=lambda s: s.evse_id)
    assert stops == [
        TransactionStopped(tx1, 1, at(60), 100.0, StopReason.REBOOT),
        TransactionStopped(tx2, 2, at(60), 250.0, StopReason.REBOOT),
    ]
    assert all(e.tx is None and e.stopping is None for e in station.evses.values())


def test_shutdown_ends_a_stop_still_waiting_for_its_final_reading_once() -> None:
    station = free_station()
    tx_id = charging(station, energy_wh=100.0)
    unplug = station.evse_seen(at(10), 1, UNPLUGGED)

    actions = station.shutdown(at(11), StopReason.REBOOT)

    assert of(unplug + actions, TransactionStopped) == [
        TransactionStopped(tx_id, 1, at(10), 100.0, StopReason.EV_DISCONNECTED)
    ]


def test_meter_reading_lower_than_the_last_is_ignored() -> None:
    station = free_station()
    station.meter_read(at(0), 1, reading(1000.0))
    station.meter_read(at(1), 1, reading(900.0))  # before the session: ignored too
    tx = one(station.evse_seen(at(2), 1, PLUGGED), TransactionStarted).tx
    assert tx.meter_start_wh == 1000.0

    station.meter_read(at(10), 1, reading(1200.0))
    station.meter_read(at(20), 1, reading(1100.0))
    assert station.evses[1].reading == reading(1200.0)

    sampled = one(station.tick(at(2) + SAMPLE_INTERVAL), MeterSampled)
    assert sampled.reading.energy_wh == 1200.0
    unplug = station.evse_seen(at(100), 1, UNPLUGGED)
    stopped = complete_stop(station, unplug, at(100.5), final_wh=1150.0)  # lower: ignored
    assert stopped.meter_stop_wh == 1200.0


# -- faults ------------------------------------------------------------------------------


def faulted(*faults: Fault, cp: CpState = CpState.C) -> EvseView:
    # The step that detects a fault still measures the EV's state; the pilot goes to -12 V.
    return view(cp, PilotMode.NEGATIVE, contactor=False, faults=faults)


def test_rcd_trip_stops_with_emergency_stop_and_reports_ground_failure() -> None:
    station = free_station()
    tx_id = charging(station, energy_wh=100.0)
    station.meter_read(at(5), 1, reading(180.0))

    actions = station.evse_seen(at(10), 1, faulted(Fault.RCD))

    assert of(actions, Permit) == [Permit(1, False, 0.0)]
    change = one(actions, StatusChanged)
    assert (change.status, change.fault) == (ConnectorStatus.FAULTED, Fault.RCD)
    stopped = complete_stop(station, actions, at(10.2), final_wh=181.0)
    assert stopped == TransactionStopped(tx_id, 1, at(10), 181.0, StopReason.EMERGENCY_STOP)

    # Latched: nothing starts while the supervisor keeps reporting it.
    held = station.evse_seen(at(11), 1, faulted(Fault.RCD, cp=CpState.F))
    held += station.meter_read(at(12), 1, reading(181.0))
    held += station.tick(at(100))
    assert of(held, TransactionStarted) == []
    assert of(held, StatusChanged) == []
    assert station.evses[1].status == (ConnectorStatus.FAULTED, Fault.RCD)


@pytest.mark.parametrize(
    ("fault", "error_code", "reason"),
    [
        (Fault.RCD, "GroundFailure", StopReason.EMERGENCY_STOP),
        (Fault.CONTACTOR_WELD, "PowerSwitchFailure", StopReason.OTHER),
        (Fault.CONTACTOR_STUCK, "PowerSwitchFailure", StopReason.OTHER),
        (Fault.OVERCURRENT, "OverCurrentFailure", StopReason.OTHER),
        (Fault.HARDWARE, "OtherError", StopReason.OTHER),
    ],
)
def test_fault_during_transaction_stops_it_and_reports_faulted(
    fault: Fault, error_code: str, reason: StopReason
) -> None:
    station = free_station()
    tx_id = charging(station, energy_wh=2000.0)
    station.meter_read(at(5), 1, reading(2100.0))

    actions = station.evse_seen(at(10), 1, faulted(fault))

    assert statuses(actions) == [(ConnectorStatus.FAULTED, fault)]
    assert words16.status_words((ConnectorStatus.FAULTED, fault)) == ("Faulted", error_code)
    assert of(actions, Permit) == [Permit(1, False, 0.0)]
    assert of(actions, TransactionStarted) == []
    stopped = complete_stop(station, actions, at(10) + FINAL_READING_WAIT)
    assert stopped == TransactionStopped(tx_id, 1, at(10), 2100.0, reason)


def test_missing_diode_reports_ev_communication_error_and_keeps_the_session() -> None:
    # Contract: diode -> Faulted, EVCommunicationError, no charging (the supervisor keeps
    # the contactor open). The station keeps the transaction and the permit, so that the
    # supervisor keeps the PWM that shows the diode again.
    station = free_station()
    tx_id = charging(station, energy_wh=300.0)

    actions = station.evse_seen(at(10), 1, view(CpState.C, PilotMode.PWM, faults={Fault.DIODE}))
    actions += station.evse_seen(at(11), 1, view(CpState.B, PilotMode.PWM, faults={Fault.DIODE}))
    actions += station.tick(at(20))

    assert statuses(actions) == [(ConnectorStatus.FAULTED, Fault.DIODE)]
    assert of(actions, MeterReadWanted) == []
    assert of(actions, TransactionStopped) == []
    assert of(actions, TransactionStarted) == []
    assert of(actions, Permit) == []  # still authorized
    tx = station.evses[1].tx
    assert tx is not None and tx.id == tx_id

    back = station.evse_seen(at(30), 1, CHARGING)
    assert statuses(back) == [(ConnectorStatus.CHARGING, None)]
    assert of(back, TransactionStarted) == []

    # Unplugged while the diode is missing: the session ends as usual.
    gone = station.evse_seen(at(40), 1, view(CpState.C, PilotMode.PWM, faults={Fault.DIODE}))
    gone += station.evse_seen(at(41), 1, UNPLUGGED)
    assert complete_stop(station, gone, at(41.1), final_wh=300.0).reason is StopReason.EV_DISCONNECTED


def test_missing_diode_with_another_fault_stops_the_session() -> None:
    station = free_station()
    charging(station)
    actions = station.evse_seen(at(10), 1, faulted(Fault.DIODE, Fault.CONTACTOR_WELD))
    assert statuses(actions) == [(ConnectorStatus.FAULTED, Fault.CONTACTOR_WELD)]
    assert complete_stop(station, actions, at(10.1), final_wh=1000.0).reason is StopReason.OTHER


def test_fault_while_idle_reports_faulted_and_starts_nothing() -> None:
    station = free_station()
    station.meter_read(at(0), 1, reading(10.0))
    actions = station.evse_seen(at(0), 1, view(CpState.A, faults={Fault.CONTACTOR_STUCK}))
    actions += station.evse_seen(at(1), 1, view(CpState.B, faults={Fault.CONTACTOR_STUCK}))
    actions += station.tick(at(2))
    assert statuses(actions) == [(ConnectorStatus.FAULTED, Fault.CONTACTOR_STUCK)]
    assert of(actions, TransactionStarted) == []


def test_most_severe_fault_decides_error_code_and_stop_reason() -> None:
    station = free_station()
    charging(station)
    actions = station.evse_seen(at(10), 1, faulted(Fault.OVERCURRENT, Fault.DIODE, Fault.RCD))
    assert statuses(actions) == [(ConnectorStatus.FAULTED, Fault.RCD)]
    assert complete_stop(station, actions, at(12)).reason is StopReason.EMERGENCY_STOP


def test_meter_offline_stops_at_last_good_reading_and_free_mode_restarts_when_it_clears() -> None:
    station = free_station()
    tx_id = charging(station, energy_wh=5000.0)
    station.meter_read(at(30), 1, reading(5400.0))

    # The meter stops answering; the daemon stops calling meter_read, the supervisor
    # reports the fault once the retries fail.
    actions = station.evse_seen(at(45), 1, faulted(Fault.METER))
    assert statuses(actions) == [(ConnectorStatus.FAULTED, Fault.METER)]
    assert of(actions, Permit) == [Permit(1, False, 0.0)]
    # The stop does not wait for a reading that cannot come, nor ask for one.
    assert of(actions, TransactionStopped) == [TransactionStopped(tx_id, 1, at(45), 5400.0, StopReason.OTHER)]
    assert of(actions, MeterReadWanted) == []

    # While the fault lasts: no new transaction, whatever the EV does.
    during = station.tick(at(46))
    during += station.evse_seen(at(47), 1, view(CpState.C, faults={Fault.METER}))
    during += station.tick(at(60))
    during += station.evse_seen(at(120), 1, view(CpState.B, faults={Fault.METER}))
    during += station.tick(at(180))
    assert of(during, TransactionStarted) == []
    assert of(during, MeterSampled) == []
    assert of(during, TransactionStopped) == []
    assert station.evses[1].status == (ConnectorStatus.FAULTED, Fault.METER)

    # The meter answers again and the supervisor clears the fault: free mode restarts.
    after = station.meter_read(at(200), 1, reading(5400.0))
    after += station.evse_seen(at(201), 1, view(CpState.B))
    new_tx = one(after, TransactionStarted).tx
    assert new_tx.id != tx_id
    assert new_tx.meter_start_wh == 5400.0
    assert new_tx.id_tag == "FREE"
    assert station.evses[1].status == (ConnectorStatus.PREPARING, None)  # start not persisted yet


# -- connector status --------------------------------------------------------------------


def test_connector_status_follows_the_session_in_ocpp16_words() -> None:
    station = list_station()
    seen = station.evse_seen(at(0), 1, UNPLUGGED)
    assert statuses(seen) == [(ConnectorStatus.AVAILABLE, None)]

    station.meter_read(at(1), 1, reading(0.0))
    assert statuses(station.evse_seen(at(2), 1, PLUGGED)) == [(ConnectorStatus.PREPARING, None)]

    swipe = station.token_presented(at(3), TOKEN)
    tx_id = one(swipe, TransactionStarted).tx.id
    # transaction, no PWM yet (start not persisted)
    assert statuses(swipe) == []  # still Preparing: not suspended, starting

    station.transaction_persisted(at(4), tx_id)
    assert statuses(station.evse_seen(at(5), 1, PLUGGED_PWM)) == [(ConnectorStatus.SUSPENDED_EV, None)]
    assert statuses(station.evse_seen(at(6), 1, view(CpState.C, PilotMode.PWM))) == []  # closing
    assert statuses(station.evse_seen(at(7), 1, CHARGING)) == [(ConnectorStatus.CHARGING, None)]

    # Limit below 6 A: the PWM stops, the contactor opens.
    assert statuses(station.evse_seen(at(8), 1, view(CpState.C))) == [(ConnectorStatus.SUSPENDED_EVSE, None)]
    assert statuses(station.evse_seen(at(9), 1, CHARGING)) == [(ConnectorStatus.CHARGING, None)]

    # The EV stops asking.
    assert statuses(station.evse_seen(at(10), 1, PLUGGED_PWM)) == [(ConnectorStatus.SUSPENDED_EV, None)]

    faults = station.evse_seen(at(11), 1, faulted(Fault.DIODE, cp=CpState.B))
    assert statuses(faults) == [(ConnectorStatus.FAULTED, Fault.DIODE)]

    assert statuses(station.evse_seen(at(12), 1, UNPLUGGED)) == [(ConnectorStatus.AVAILABLE, None)]


def test_status_changed_is_emitted_only_when_the_status_changes() -> None:
    station = free_station()
    tx_id = charging(station)

    repeated: list[Action] = []
    for s in range(1, 30):
        repeated += station.evse_seen(at(s), 1, CHARGING)
        repeated += station.meter_read(at(s), 1, reading(1000.0 + s))
        repeated += station.tick(at(s))
    assert of(repeated, StatusChanged) == []

    # Same fault seen again: one Faulted only.
    first = station.evse_seen(at(40), 1, faulted(Fault.METER))
    again = station.evse_seen(at(41), 1, faulted(Fault.METER))
    again += station.evse_seen(at(42), 1, view(CpState.B, faults={Fault.METER}))
    assert statuses(first) == [(ConnectorStatus.FAULTED, Fault.METER)]
    assert of(again, StatusChanged) == []
    assert tx_id  # the transaction existed before the fault


def test_shorted_pilot_state_e_reports_faulted() -> None:
    station = list_station()
    station.evse_seen(at(0), 1, UNPLUGGED)
    change = one(station.evse_seen(at(1), 1, view(CpState.E)), StatusChanged)
    assert (change.status, change.fault) == (ConnectorStatus.FAULTED, None)


def test_free_mode_shorted_pilot_state_e_starts_no_transaction() -> None:
    station = free_station()
    station.meter_read(at(0), 1, reading(0.0))
    station.evse_seen(at(0), 1, UNPLUGGED)
    actions = station.evse_seen(at(1), 1, view(CpState.E))
    assert of(actions, TransactionStarted) == []


def test_free_mode_pilot_f_with_no_ev_starts_no_transaction() -> None:
    station = free_station()
    station.meter_read(at(0), 1, reading(0.0))
    station.evse_seen(at(0), 1, UNPLUGGED)
    # fault detected with no EV: the supervisor drives -12 V
    station.evse_seen(at(1), 1, view(CpState.A, PilotMode.NEGATIVE, faults={Fault.HARDWARE}))
    station.evse_seen(at(1.05), 1, view(CpState.F, PilotMode.NEGATIVE, faults={Fault.HARDWARE}))
    # the driver recovers while the pilot is still held at -12 V
    actions = station.evse_seen(at(1.1), 1, view(CpState.F, PilotMode.NEGATIVE))
    assert of(actions, TransactionStarted) == []
    assert station.evses[1].status == (ConnectorStatus.AVAILABLE, None)


# -- periodic meter samples --------------------------------------------------------------


def test_meter_sampled_every_60_s_during_a_transaction() -> None:
    station = free_station()
    station.meter_read(at(0), 1, reading(0.0))
    tx_id = one(station.evse_seen(at(0), 1, PLUGGED), TransactionStarted).tx.id
    station.transaction_persisted(at(0), tx_id)

    samples: list[MeterSampled] = []
    for s in range(1, 181):
        samples += of(station.meter_read(at(s), 1, reading(float(s * 10))), MeterSampled)
        samples += of(station.tick(at(s)), MeterSampled)

    interval = int(SAMPLE_INTERVAL.total_seconds())
    assert [(m.tx_id, m.taken_at) for m in samples] == [
        (tx_id, at(interval)),
        (tx_id, at(2 * interval)),
        (tx_id, at(3 * interval)),
    ]
    assert [m.reading.energy_wh for m in samples] == [600.0, 1200.0, 1800.0]


def test_no_meter_samples_outside_a_transaction() -> None:
    station = list_station()
    actions = station.evse_seen(at(0), 1, UNPLUGGED)
    for s in range(0, 300, 10):
        actions += station.meter_read(at(s), 1, reading(float(s)))
        actions += station.tick(at(s))
    actions += station.evse_seen(at(300), 1, PLUGGED)  # plugged, not authorized
    for s in range(300, 600, 10):
        actions += station.tick(at(s))
    assert of(actions, MeterSampled) == []

    # and none after the transaction has ended
    free = free_station()
    charging(free)
    free.evse_seen(at(30), 1, UNPLUGGED)
    after: list[Action] = []
    for s in range(30, 400, 10):
        after += free.tick(at(s))
    assert of(after, MeterSampled) == []


def test_nothing_starts_after_shutdown() -> None:
    station = free_station()
    charging(station)
    stopped = station.shutdown(at(100), StopReason.REBOOT)
    assert one(stopped, TransactionStopped).reason is StopReason.REBOOT
    later = station.meter_read(at(101), 1, reading(9999.0)) + station.tick(at(102))
    assert of(later, TransactionStarted) == []
