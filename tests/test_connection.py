"""Where the station connects: raised profiles, 2.0.1 slots, fallback (pure logic)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from controller.ocpp import connection
from controller.ocpp.connection import Chooser, Target

URL = "ws://csms.example:9000/ocpp"


def test_with_scheme_keeps_host_port_and_path() -> None:
    assert connection.with_scheme(URL, 2) == "wss://csms.example:9000/ocpp"
    assert connection.with_scheme("wss://h/x/", 1) == "ws://h/x"
    assert connection.with_scheme(URL, 0) == URL


def test_floor_applies_only_while_the_config_profile_is_unchanged() -> None:
    stored = connection.floor_setting(1, 2)
    assert connection.floor(1, stored) == 2
    assert connection.floor(0, stored) == 0  # the technician changed the config: it wins
    assert connection.floor(3, stored) == 3  # never below the config
    assert connection.floor(1, None) == 1
    assert connection.floor(1, "not json") == 1
    assert connection.floor(1, json.dumps({"base": 1})) == 1


def test_trial_only_raises_from_the_current_profile() -> None:
    assert connection.trial_profile(json.dumps({"profile": 2, "from": 1}), 1) == 2
    assert connection.trial_profile(json.dumps({"profile": 2, "from": 0}), 1) is None
    assert connection.trial_profile(json.dumps({"profile": 1, "from": 1}), 1) is None
    assert connection.trial_profile("", 1) is None


def test_targets_16_trial_first_then_the_previous_profile() -> None:
    targets = connection.targets_16(URL, 1, 1, 2)
    assert targets == [Target("wss://csms.example:9000/ocpp", 2, trial=True), Target(URL, 1)]
    assert connection.targets_16(URL, 1, 1, None) == [Target(URL, 1)]
    assert connection.targets_16(URL, 1, 2, None) == [Target("wss://csms.example:9000/ocpp", 2)]


def test_targets_201_follow_the_priority_and_skip_slots_below_the_floor() -> None:
    slots: dict[int, dict[str, object]] = {
        1: {"ocppCsmsUrl": "wss://new/ocpp/", "securityProfile": 2},
        2: {"ocppCsmsUrl": "ws://old/ocpp", "securityProfile": 0},
    }
    targets = connection.targets_201(URL, 1, 1, slots, ["1", "2", "0", "x", "9"])
    assert targets == [Target("wss://new/ocpp", 2, 1, trial=True), Target(URL, 1, 0)]
    # After connecting with profile 2, slot 0 (profile 1) is no longer used.
    assert connection.targets_201(URL, 1, 2, slots, ["1", "0"]) == [Target("wss://new/ocpp", 2, 1)]
    # Nothing usable: the config's URL with the floor's scheme.
    assert connection.targets_201(URL, 1, 3, slots, ["1", "0"]) == [Target("wss://csms.example:9000/ocpp", 3)]


def test_chooser_moves_on_after_the_attempts_and_wraps_around() -> None:
    a, b = Target("wss://a", 2, 1), Target("ws://b", 1, 0)
    chooser = Chooser([a, b], 2)
    assert chooser.failed() is None and chooser.current == a
    assert chooser.failed() == a and chooser.current == b
    chooser.succeeded()
    assert chooser.failed() is None
    assert chooser.failed() == b and chooser.current == a


@given(st.integers(min_value=1, max_value=5), st.lists(st.booleans(), max_size=60))
def test_chooser_never_gives_up_its_only_target(attempts: int, outcomes: list[bool]) -> None:
    only = Target(URL, 0)
    chooser = Chooser([only], attempts)
    for ok in outcomes:
        if ok:
            chooser.succeeded()
        else:
            assert chooser.failed() is None
        assert chooser.current == only
