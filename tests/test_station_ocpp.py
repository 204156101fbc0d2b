"""The station model's OCPP-facing rules: authorization by the CSMS, remote control,
availability, reservations and charging limits. Pure: no I/O, time passed in."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core import limits as limits_module
from controller.core import station as station_module
from controller.core.limits import Limit
from controller.core.schedule import Kind, Period, Profile, Purpose, Schedule
from controller.core.station import (
    CONNECTOR,
    EVSE,
    FIRMWARE,
    STATION,
    AuthorizeWanted,
    AvailabilityChange,
    ConnectorStatus,
    Permit,
    Reservation,
    ReservationEnd,
    ReservationEnded,
    ReservationResult,
    Station,
    StatusChanged,
    StopReason,
    TokenRejected,
    TransactionStarted,
    TransactionStopped,
    availability_setting,
    parse_availability,
)
from controller.safety.pilot import CpState
from tests import test_schedule as schedule_tests
from tests.test_station import (
    CHARGING,
    MAX_A,
    OTHER_TOKEN,
    PLUGGED,
    TOKEN,
    UNPLUGGED,
    at,
    of,
    one,
    reading,
    view,
)


def ocpp_station(evses: int = 1) -> Station:
    station = Station.create({i: MAX_A for i in range(1, evses + 1)}, "ocpp", [], "FREE")
    for i in range(1, evses + 1):
        station.meter_read(at(0), i, reading(1000.0))
        station.evse_seen(at(0), i, UNPLUGGED)
    return station


def started(station: Station, t: float = 1.0, evse_id: int = 1) -> TransactionStarted:
    actions = station.evse_seen(at(t), evse_id, PLUGGED)
    start = one(actions, TransactionStarted)
    station.transaction_persisted(at(t), start.tx.id)
    return start


def test_a_token_in_ocpp_mode_asks_and_starts_only_when_accepted() -> None:
    station = ocpp_station()
    station.evse_seen(at(1), 1, PLUGGED)
    assert one(station.token_presented(at(2), TOKEN), AuthorizeWanted).token == TOKEN
    assert not of(station.tick(at(3)), TransactionStarted)
    assert one(station.token_authorized(at(3), TOKEN, False, reason="Blocked"), TokenRejected)
    actions = station.token_authorized(at(4), TOKEN, True, parent="GROUP")
    assert one(actions, TransactionStarted).tx.parent == "GROUP"


def test_a_token_of_the_same_parent_group_stops_the_transaction() -> None:
    station = ocpp_station()
    station.evse_seen(at(1), 1, PLUGGED)
    station.token_authorized(at(1), TOKEN, True, parent="GROUP")
    stopped = station.token_authorized(at(5), OTHER_TOKEN, True, parent="GROUP")
    station.meter_read(at(5), 1, reading(1100.0))
    assert station.evses[1].stopping is None and station.evses[1].tx is None
    assert any(isinstance(a, TransactionStopped) for a in stopped) or station.evses[1].finishing


def test_remote_start_waits_for_the_ev_until_the_connection_timeout() -> None:
    station = ocpp_station()
    station.connection_timeout = timedelta(seconds=10)
    assert station.remote_start(at(1), 1, TOKEN)
    assert station.evses[1].status[0] is ConnectorStatus.PREPARING
    station.tick(at(12))
    assert station.evses[1].token is None and station.evses[1].status[0] is ConnectorStatus.AVAILABLE
    assert station.remote_start(at(13), 1, TOKEN)
    assert one(station.evse_seen(at(14), 1, PLUGGED), TransactionStarted).tx.id_tag == TOKEN


def test_remote_start_is_rejected_on_a_busy_or_inoperative_evse() -> None:
    station = ocpp_station()
    started_tx = station.remote_start(at(1), None, TOKEN)
    assert started_tx and not station.remote_start(at(1), 1, OTHER_TOKEN)
    station.evses[1].token = None
    station.set_available(at(2), 1, False)
    assert not station.remote_start(at(3), 1, TOKEN)


def test_stop_transaction_for_the_csms_uses_the_reason_given() -> None:
    station = ocpp_station()
    station.remote_start(at(1), 1, TOKEN)
    start = started(station, 2)
    assert station.stop_transaction(at(5), start.tx.id, StopReason.REMOTE)
    actions = station.meter_read(at(5), 1, reading(1200.0))
    assert one(actions, TransactionStopped).reason is StopReason.REMOTE
    assert not station.stop_transaction(at(6), "unknown", StopReason.REMOTE)


def test_deauthorized_with_stop_on_invalid_id_stops_the_transaction() -> None:
    """1.6 StopTransactionOnInvalidId = true / 2.0.1 E05.FR.09-10: stopped, DeAuthorized."""
    station = ocpp_station()
    station.remote_start(at(1), 1, TOKEN)
    start = started(station, 2)
    station.stop_on_invalid_id = True
    assert station.deauthorized(at(3), start.tx.id) == "stopped"
    actions = station.meter_read(at(3), 1, reading(1010.0))
    assert one(actions, TransactionStopped).reason is StopReason.DEAUTHORIZED
    assert station.deauthorized(at(4), "unknown") == ""


def test_deauthorized_with_end_on_deauthorize_stops_whatever_stop_on_invalid_id_says() -> None:
    """2.0.1 E06.FR.04 (TxStopPoint Authorized, set by the adapter as end_on_deauthorize):
    a non-valid idTokenInfo stops the transaction, DeAuthorized, even with
    StopTxOnInvalidId false and MaxEnergyOnInvalidId left."""
    station = ocpp_station()
    station.remote_start(at(1), 1, TOKEN)
    start = started(station, 2)
    station.evse_seen(at(2), 1, CHARGING)
    station.stop_on_invalid_id = False
    station.max_energy_on_invalid_id_wh = 50.0
    station.end_on_deauthorize = True
    assert station.deauthorized(at(3), start.tx.id) == "stopped"
    actions = station.drain() + station.meter_read(at(3), 1, reading(1010.0))
    assert Permit(1, False, 0.0) in actions
    assert one(actions, TransactionStopped).reason is StopReason.DEAUTHORIZED
    assert station.evses[1].tx is None


def test_deauthorized_without_stop_on_invalid_id_stops_energy_until_the_ev_leaves() -> None:
    """1.6 section 3.5 / StopTransactionOnInvalidId = false: "the Charge Point SHALL NOT
    stop the transaction" but stops the energy delivery (SuspendedEVSE) until the EV leaves."""
    station = ocpp_station()
    station.remote_start(at(1), 1, TOKEN)
    start = started(station, 2)
    station.evse_seen(at(2), 1, CHARGING)
    assert station.evses[1].permit == (True, MAX_A)
    station.stop_on_invalid_id = False
    assert station.deauthorized(at(3), start.tx.id) == "suspended"
    actions = station.drain()
    assert Permit(1, False, 0.0) in actions
    assert station.evses[1].status == (ConnectorStatus.SUSPENDED_EVSE, None)
    assert station.evses[1].tx is not None and not of(actions, TransactionStopped)
    # The EV answers the withdrawn PWM by leaving C; the transaction still goes on.
    station.evse_seen(at(4), 1, PLUGGED)
    station.tick(at(100))
    assert station.evses[1].tx is not None and station.evses[1].status == (
        ConnectorStatus.SUSPENDED_EVSE,
        None,
    )
    actions = station.evse_seen(at(101), 1, UNPLUGGED) + station.meter_read(at(101), 1, reading(1000.0))
    assert one(actions, TransactionStopped).reason is StopReason.EV_DISCONNECTED


def test_deauthorized_allows_max_energy_on_invalid_id_then_suspends() -> None:
    """2.0.1 E05.FR.03: with StopTxOnInvalidId false, energy delivery is allowed until
    MaxEnergyOnInvalidId (Wh) has been delivered."""
    station = ocpp_station()
    station.remote_start(at(1), 1, TOKEN)
    start = started(station, 2)  # meter start 1000 Wh
    station.evse_seen(at(2), 1, CHARGING)
    station.stop_on_invalid_id = False
    station.max_energy_on_invalid_id_wh = 50.0
    assert station.deauthorized(at(3), start.tx.id) == "suspended"
    assert of(station.drain(), Permit) == []
    assert station.evses[1].status == (ConnectorStatus.CHARGING, None)
    station.meter_read(at(4), 1, reading(1049.0))
    assert station.evses[1].permit == (True, MAX_A)
    actions = station.meter_read(at(5), 1, reading(1050.0))
    assert Permit(1, False, 0.0) in actions
    station.evse_seen(at(5), 1, PLUGGED)
    assert station.evses[1].status == (ConnectorStatus.SUSPENDED_EVSE, None)


def test_parent_id_from_the_start_answer_lets_a_card_of_the_group_stop_it() -> None:
    """1.6 section 3.5: the parent id tag may come with StartTransaction.conf; another
    card with the same parent then stops the transaction."""
    station = ocpp_station()
    station.evse_seen(at(1), 1, PLUGGED)
    start = one(station.token_authorized(at(1), TOKEN, True), TransactionStarted)
    station.transaction_persisted(at(1), start.tx.id)
    assert start.tx.parent is None
    station.adopt_parent(start.tx.id, "GROUP")
    station.token_authorized(at(5), OTHER_TOKEN, True, parent="GROUP")
    actions = station.meter_read(at(5), 1, reading(1100.0))
    stop = one(actions, TransactionStopped)
    assert (stop.reason, stop.id_tag) == (StopReason.LOCAL, OTHER_TOKEN)


def test_tc_004_1_card_before_plug_goes_preparing() -> None:
    """OCTT TC_004_1 / 1.6 section 4.9 Preparing: "Typically a Connector is in preparing
    state when a user presents a tag, inserts a cable or a vehicle occupies the parking bay"."""
    station = ocpp_station(evses=2)
    station.token_presented(at(1), TOKEN)
    actions = station.token_authorized(at(2), TOKEN, True)
    assert {(a.evse_id, a.status) for a in of(actions, StatusChanged)} == {
        (1, ConnectorStatus.PREPARING),
        (2, ConnectorStatus.PREPARING),
    }
    actions = station.evse_seen(at(3), 2, PLUGGED)
    assert one(actions, TransactionStarted).tx.evse_id == 2
    assert station.evses[1].status == (ConnectorStatus.AVAILABLE, None)


def test_tc_004_2_card_before_plug_back_to_available_after_connection_timeout() -> None:
    """OCTT TC_004_2: no EV within ConnectionTimeOut, the connector is Available again."""
    station = ocpp_station()
    station.connection_timeout = timedelta(seconds=10)
    station.token_presented(at(1), TOKEN)
    station.token_authorized(at(1), TOKEN, True)
    assert station.evses[1].status == (ConnectorStatus.PREPARING, None)
    assert station.tick(at(10)) == []
    actions = station.tick(at(11))
    assert [(a.evse_id, a.status) for a in of(actions, StatusChanged)] == [(1, ConnectorStatus.AVAILABLE)]
    assert not of(station.evse_seen(at(12), 1, PLUGGED), TransactionStarted)


def test_card_before_plug_leaves_the_connector_available_in_2_0_1_words() -> None:
    """2.0.1 has no Preparing: Occupied needs an EV, so a presented token changes nothing."""
    station = ocpp_station()
    station.preparing_for_token = False
    station.token_presented(at(1), TOKEN)
    assert of(station.token_authorized(at(1), TOKEN, True), StatusChanged) == []
    assert station.evses[1].status == (ConnectorStatus.AVAILABLE, None)


def test_a_rejected_card_before_plug_leaves_the_connector_available() -> None:
    station = ocpp_station()
    station.token_presented(at(1), TOKEN)
    actions = station.token_authorized(at(2), TOKEN, False, reason="Invalid")
    assert of(actions, StatusChanged) == [] and station.evses[1].status == (ConnectorStatus.AVAILABLE, None)


def test_inoperative_during_a_transaction_is_scheduled_then_unavailable() -> None:
    station = ocpp_station()
    station.remote_start(at(1), 1, TOKEN)
    start = started(station, 2)
    assert station.set_available(at(3), 1, False) is AvailabilityChange.SCHEDULED
    assert station.evses[1].tx is not None  # the transaction runs on
    station.evse_seen(at(4), 1, UNPLUGGED)
    station.meter_read(at(4), 1, reading(1300.0))
    assert station.evses[1].status[0] is ConnectorStatus.UNAVAILABLE
    assert not station.remote_start(at(5), 1, TOKEN)
    assert station.set_available(at(6), 1, True) is AvailabilityChange.ACCEPTED
    assert station.evses[1].status[0] is ConnectorStatus.AVAILABLE
    assert start.tx.id


def test_scheduled_inoperative_goes_from_charging_straight_to_unavailable() -> None:
    """1.6 §5.2 / 2.0.1 G03.FR.05: the change happens when the transaction ends, with no
    momentary Available while the stop waits for its final meter reading."""
    station = ocpp_station()
    station.remote_start(at(1), 1, TOKEN)
    started(station, 2)
    station.evse_seen(at(2), 1, CHARGING)
    assert station.set_available(at(3), 1, False) is AvailabilityChange.SCHEDULED
    seen = [a.status for a in station.evse_seen(at(4), 1, UNPLUGGED) if isinstance(a, StatusChanged)]
    assert station.evses[1].stopping is not None  # the final reading is still to come
    actions = station.meter_read(at(4.5), 1, reading(1300.0))
    assert one(actions, TransactionStopped).reason is StopReason.EV_DISCONNECTED
    seen += [a.status for a in actions if isinstance(a, StatusChanged)]
    assert seen == [ConnectorStatus.UNAVAILABLE]


def test_g03_a_connector_set_inoperative_stays_so_through_its_evse_and_the_station() -> None:
    """G03/G04: the station, the EVSE and the connector keep their own ChangeAvailability;
    lifting one level leaves the others (a connector set Inoperative stays Unavailable)."""
    station = ocpp_station()
    assert station.set_available(at(1), 1, False, (CONNECTOR,)) is AvailabilityChange.ACCEPTED
    station.set_available(at(2), 1, False, (EVSE,))
    station.set_available(at(3), 0, False, (STATION,))
    station.set_available(at(4), 0, True, (STATION,))
    station.set_available(at(5), 1, True, (EVSE,))
    assert station.evses[1].status[0] is ConnectorStatus.UNAVAILABLE
    assert not station.remote_start(at(6), 1, TOKEN)
    assert station.set_available(at(7), 1, True, (CONNECTOR,)) is AvailabilityChange.ACCEPTED
    assert station.evses[1].status[0] is ConnectorStatus.AVAILABLE


def test_g04_an_evse_set_inoperative_stays_so_when_the_station_turns_operative() -> None:
    station = ocpp_station(2)
    station.set_available(at(1), 2, False, (EVSE,))
    station.set_available(at(2), 0, False, (STATION,))
    assert [e.status[0] for e in station.evses.values()] == [
        ConnectorStatus.UNAVAILABLE,
        ConnectorStatus.UNAVAILABLE,
    ]
    station.set_available(at(3), 0, True, (STATION,))
    assert [e.status[0] for e in station.evses.values()] == [
        ConnectorStatus.AVAILABLE,
        ConnectorStatus.UNAVAILABLE,
    ]


def test_availability_levels_persist_in_one_setting_per_evse() -> None:
    assert availability_setting(set()) == "operative"
    assert availability_setting({FIRMWARE}) == "operative"  # the firmware hold ends with the process
    assert parse_availability(availability_setting({CONNECTOR, STATION})) == {CONNECTOR, STATION}
    assert parse_availability("inoperative") == {EVSE}  # as stored before the levels
    assert parse_availability(None) == parse_availability("operative") == set()
    assert parse_availability("evse,bogus") == {EVSE}


def test_a_reservation_admits_only_its_holder_or_parent_and_is_used_once() -> None:
    station = ocpp_station()
    reservation = Reservation(7, 1, TOKEN, at(100), parent="GROUP")
    assert station.reserve(at(1), reservation) is ReservationResult.ACCEPTED
    assert station.evses[1].status[0] is ConnectorStatus.RESERVED
    station.evse_seen(at(2), 1, PLUGGED)
    station.token_authorized(at(3), OTHER_TOKEN, True)
    assert station.evses[1].tx is None
    actions = station.token_authorized(at(4), "MEMBER", True, parent="GROUP")
    start = one(actions, TransactionStarted)
    assert start.tx.reservation_id == 7
    assert one(actions, ReservationEnded).reason is ReservationEnd.USED
    assert station.evses[1].reservation is None


def test_reservations_expire_and_can_be_cancelled() -> None:
    station = ocpp_station(2)
    assert station.reserve(at(1), Reservation(1, 1, TOKEN, at(10))) is ReservationResult.ACCEPTED
    assert station.reserve(at(1), Reservation(2, 1, OTHER_TOKEN, at(10))) is ReservationResult.OCCUPIED
    assert one(station.tick(at(11)), ReservationEnded).reason is ReservationEnd.EXPIRED
    assert station.evses[1].status[0] is ConnectorStatus.AVAILABLE
    assert station.reserve(at(12), Reservation(3, 2, TOKEN, at(50))) is ReservationResult.ACCEPTED
    assert station.cancel_reservation(at(13), 3)
    assert one(station.drain(), ReservationEnded).reason is ReservationEnd.CANCELLED
    assert not station.cancel_reservation(at(14), 3)


def test_reserve_reports_unavailable_and_occupied() -> None:
    station = ocpp_station()
    station.set_available(at(1), 1, False)
    assert station.reserve(at(2), Reservation(1, 1, TOKEN, at(60))) is ReservationResult.UNAVAILABLE
    station.set_available(at(3), 1, True)
    station.evse_seen(at(4), 1, PLUGGED)
    assert station.reserve(at(5), Reservation(1, 1, TOKEN, at(60))) is ReservationResult.OCCUPIED
    assert station.reserve(at(5), Reservation(1, 9, TOKEN, at(60))) is ReservationResult.REJECTED


def tx_default(limit_a: float, start: datetime | None = None, evse_id: int = 1, id: int = 1) -> Profile:
    """A TxDefaultProfile of ``limit_a`` from ``start`` on (without: from any instant on)."""
    schedule = Schedule((Period(0, limit_a),), "A", start or at(0) - timedelta(days=1))
    return Profile(id, evse_id, 0, Purpose.TX_DEFAULT, Kind.ABSOLUTE, schedule)


def charging_ocpp(evses: int = 1) -> Station:
    station = ocpp_station(evses)
    for evse_id in range(1, evses + 1):
        station.remote_start(at(1), evse_id, TOKEN)
        started(station, 2, evse_id)
        station.evse_seen(at(3), evse_id, CHARGING)
    return station


def test_the_schedule_limit_caps_the_permit() -> None:
    station = charging_ocpp()
    assert station.profiles.install(tx_default(10.0), None) == "Accepted"
    permit = one(station.limits_changed(at(4)), Permit)
    assert permit.authorized and permit.limit_a == 10.0
    assert station.profiles.clear(id=1) == 1
    assert one(station.limits_changed(at(5)), Permit).limit_a == MAX_A


def test_a_period_starting_later_takes_effect_at_its_start_instant() -> None:
    """The limit timer sleeps until ``next_limit_change``; the limit is the new one from that
    very instant on, and not a microsecond before."""
    station = charging_ocpp()
    assert station.profiles.install(tx_default(10.0, start=at(100)), None) == "Accepted"
    assert not of(station.limits_changed(at(4)), Permit)  # not yet: 32 A
    assert station.next_limit_change(at(4)) == at(100)
    assert not of(station.limits_changed(at(100) - timedelta(microseconds=1)), Permit)
    assert one(station.limits_changed(at(100)), Permit).limit_a == 10.0
    assert station.composite(1, at(4), 200, "A") == [Period(0, MAX_A), Period(96, 10.0)]
    assert station.next_limit_change(at(100)) is None


def test_the_next_limit_change_follows_the_transactions() -> None:
    """A Relative TxDefaultProfile starts with the transaction: no change is due before one runs."""
    station = ocpp_station()
    schedule = Schedule((Period(0, 16.0), Period(600, 10.0)), "A")
    assert station.profiles.install(Profile(1, 1, 0, Purpose.TX_DEFAULT, Kind.RELATIVE, schedule), None)
    assert station.next_limit_change(at(1)) is None
    station.remote_start(at(1), 1, TOKEN)
    started(station, 2)
    assert station.next_limit_change(at(3)) == at(602)


def test_a_limit_under_6_amps_offers_nothing_and_is_reported_as_nothing() -> None:
    """IEC 61851-1 Annex A: no PWM under 6 A. The permit carries 0 A, the EVSE is suspended, and
    the composite schedule reports the 0 A enforced, not the 4 A asked for."""
    station = charging_ocpp()
    station.profiles.install(tx_default(4.0), None)
    actions = station.limits_changed(at(4))
    assert one(actions, Permit) == Permit(1, True, 0.0)
    station.evse_seen(at(5), 1, view(CpState.C))  # the PWM stopped
    assert station.evses[1].status == (ConnectorStatus.SUSPENDED_EVSE, None)
    assert station.composite(1, at(5), 60, "A") == [Period(0, 0.0)]
    assert station.composite(1, at(5), 60, "W") == [Period(0, 0.0)]
    station.profiles.install(tx_default(6.0), None)
    assert one(station.limits_changed(at(6)), Permit) == Permit(1, True, 6.0)


def test_the_hardware_limit_caps_the_permit_and_the_composite_alike() -> None:
    station = charging_ocpp()
    station.profiles.install(tx_default(40.0), None)
    assert not of(station.limits_changed(at(4)), Permit)  # still the 32 A of the hardware
    assert station.composite(1, at(4), 60, "A") == [Period(0, MAX_A)]
    station.evses[1].max_current_a = 16.0  # a reload
    assert one(station.tick(at(5)), Permit).limit_a == 16.0
    assert station.composite(1, at(5), 60, "A") == [Period(0, 16.0)]


def test_the_station_applies_no_limit_rule_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hardware limit and the 6 A minimum are rules of ``effective_limit`` alone: whatever
    it says is what the permit carries, above the hardware limit or under 6 A (the safety
    supervisor clamps the duty again, as the last line of defence)."""
    told = [50.0]

    def fake(*args: object, **kwargs: object) -> Limit:
        return Limit(told[-1], None)

    monkeypatch.setattr(station_module, "effective_limit", fake)
    station = ocpp_station()
    station.remote_start(at(1), 1, TOKEN)
    started(station, 2)
    assert station.evses[1].permit == (True, 50.0)
    told.append(3.0)
    assert one(station.limits_changed(at(3)), Permit) == Permit(1, True, 3.0)
    station.evse_seen(at(4), 1, PLUGGED)
    assert station.evses[1].status == (ConnectorStatus.PREPARING, None)  # no 6 A rule here: PWM on its way
    told.append(0.0)
    station.limits_changed(at(5))
    assert station.evses[1].status == (ConnectorStatus.SUSPENDED_EVSE, None)


def test_the_6_amp_minimum_is_the_pilot_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """``effective_limit`` reads the minimum from the IEC 61851 pilot module, not a copy."""
    station = charging_ocpp()
    station.profiles.install(tx_default(8.0), None)
    assert one(station.limits_changed(at(4)), Permit).limit_a == 8.0
    monkeypatch.setattr(limits_module, "MIN_CURRENT_A", 10.0)
    assert one(station.limits_changed(at(5)), Permit).limit_a == 0.0
    assert station.composite(1, at(5), 60, "A") == [Period(0, 0.0)]


def test_two_evses_share_the_station_maximum_from_the_start_of_the_second_transaction() -> None:
    """K08: the share changes in the very evaluation that starts or ends a transaction."""
    station = ocpp_station(2)
    station.profiles.install(
        Profile(1, 0, 0, Purpose.STATION_MAX, Kind.ABSOLUTE, Schedule((Period(0, 32.0),), "A", at(0))), None
    )
    station.remote_start(at(1), 1, TOKEN)
    started(station, 2, 1)
    assert station.evses[1].permit == (True, 32.0)
    station.remote_start(at(3), 2, OTHER_TOKEN)
    actions = station.evse_seen(at(4), 2, PLUGGED)
    assert one(actions, TransactionStarted)
    assert Permit(1, True, 16.0) in actions
    assert [p.limit for p in station.composite(1, at(4), 60, "A")] == [16.0]


def test_setting_the_clock_moves_duration_timers() -> None:
    station = ocpp_station()
    station.connection_timeout = timedelta(seconds=10)
    station.remote_start(at(1), 1, TOKEN)
    station.shift(timedelta(hours=-1))
    assert station.evses[1].token_expires == at(11) - timedelta(hours=1)
    station.tick(at(12) - timedelta(hours=1))  # 11 s later on the new clock: timed out
    assert station.evses[1].token is None


def test_an_acceptance_after_its_ev_left_starts_nothing_for_the_next_ev() -> None:
    station = ocpp_station()
    station.evse_seen(at(1), 1, PLUGGED)
    assert one(station.token_presented(at(2), TOKEN), AuthorizeWanted)
    station.evse_seen(at(3), 1, UNPLUGGED)  # the driver gives up and leaves
    station.evse_seen(at(4), 1, PLUGGED)  # the next EV
    late = station.token_authorized(at(5), TOKEN, True)  # the answer, held up by the network
    assert not of(late, TransactionStarted) and "has left" in one(late, TokenRejected).reason
    assert station.evses[1].token is None and station.pending_token is None
    station.token_presented(at(6), TOKEN)  # presented again: for this EV now
    assert one(station.token_authorized(at(7), TOKEN, True), TransactionStarted).tx.id_tag == TOKEN


def test_an_acceptance_after_the_connection_timeout_starts_nothing() -> None:
    station = ocpp_station()
    station.connection_timeout = timedelta(seconds=10)
    station.evse_seen(at(1), 1, PLUGGED)
    station.token_presented(at(2), TOKEN)
    late = station.token_authorized(at(13), TOKEN, True)
    assert not of(late, TransactionStarted) and "more than 10 s" in one(late, TokenRejected).reason


def test_a_late_acceptance_still_serves_a_card_presented_before_plug_in() -> None:
    station = ocpp_station()
    station.token_presented(at(1), TOKEN)  # no EV yet
    station.evse_seen(at(3), 1, PLUGGED)
    assert one(station.token_authorized(at(4), TOKEN, True), TransactionStarted)


def test_setting_the_clock_moves_the_time_a_card_was_presented() -> None:
    station = ocpp_station()
    station.connection_timeout = timedelta(seconds=10)
    station.evse_seen(at(1), 1, PLUGGED)
    station.token_presented(at(2), TOKEN)
    station.shift(timedelta(hours=-1))
    assert one(station.token_authorized(at(5) - timedelta(hours=1), TOKEN, True), TransactionStarted)


@settings(max_examples=50, deadline=None)
@given(
    installed=st.lists(schedule_tests.profiles(), max_size=6),
    charging=st.lists(st.none() | schedule_tests.offsets, min_size=1, max_size=4),
    probes=st.lists(schedule_tests.offsets, min_size=1, max_size=10),
)
def test_the_permits_carry_the_composite_reported_at_every_instant(
    installed: list[Profile], charging: list[int | None], probes: list[int]
) -> None:
    """K08 end to end through the station core: for any profiles and 1 to 4 EVSEs, idle or
    charging since any instant, the permit of each charging EVSE is what its composite
    schedule reports for that instant."""
    station = Station.create({i: MAX_A for i in range(1, len(charging) + 1)}, "ocpp", [], "FREE")
    for evse_id, started_s in enumerate(charging, 1):
        station.meter_read(at(0), evse_id, reading(1000.0))
        station.evse_seen(at(0), evse_id, UNPLUGGED)
        if started_s is not None:
            now = schedule_tests.at(started_s)
            station.remote_start(now, evse_id, f"TOKEN{evse_id}")
            tx = one(station.evse_seen(now, evse_id, PLUGGED), TransactionStarted).tx
            station.transaction_persisted(now, tx.id)
    first = station.evses[1].tx
    for profile in installed:
        station.profiles.install(profile, first.id if first else None)
    start = schedule_tests.at(min(probes))
    duration = max(probes) - min(probes) + 1
    reported = {evse_id: station.composite(evse_id, start, duration, "A") for evse_id in station.evses}
    for s in sorted(probes):
        station.limits_changed(schedule_tests.at(s))
        for evse_id, evse in station.evses.items():
            in_force = [q for q in reported[evse_id] if q.start_s <= s - min(probes)][-1]
            assert evse.permit == ((True, in_force.limit) if evse.tx else (False, 0.0))
