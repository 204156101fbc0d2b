"""The shortest OCPP 1.6 session end to end: plug, swipe, charge, unplug."""

from tests.ocpp_harness import TOKEN, Bench


def test_regular_session_reaches_the_csms(bench: Bench) -> None:
    start = bench.charge()
    assert start["idTag"] == TOKEN
    mark = bench.mark()
    bench.sim().unplug(1)
    stop = bench.wait("StopTransaction", after=mark)
    assert stop["reason"] == "EVDisconnected"
