"""OCPP 1.6 power loss end to end, against the development CSMS on a real websocket with
the daemon as a subprocess on simulated hardware: the daemon is killed (SIGKILL) to stand
for a power cut, and a transaction it left open is stopped once, as PowerLoss, at the next
start. Local Auth List Management, the Authorization Cache and offline behaviour run
in-process in test_inproc_ocpp16_offline.py.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from typing import Any

from tests.ocpp16_helpers import (
    OTHER,
    authorization,
    energy,
    stored_list,
    tx_messages,
)

# The fixtures `bench` and `csms` come from tests/conftest.py (tests.ocpp_harness).
from tests.ocpp_harness import TOKEN, Bench, eventually
from tests.ocpp_helpers import outbox_empty

# -- helpers ---------------------------------------------------------------------------------


def configure(bench: Bench, **keys: str) -> None:
    for key, value in keys.items():
        reply = bench.call("ChangeConfiguration", {"key": key, "value": value})
        assert reply["status"] == "Accepted", f"ChangeConfiguration {key}={value}: {reply}"


def send_local_list(
    bench: Bench, version: int, update_type: str, entries: list[dict[str, Any]], timeout: float = 10
) -> str:
    payload = {"listVersion": version, "updateType": update_type, "localAuthorizationList": entries}
    status: str = bench.call("SendLocalList", payload, timeout=timeout)["status"]
    return status


def list_version(bench: Bench) -> int:
    version: int = bench.call("GetLocalListVersion", {})["listVersion"]
    return version


# -- Local Authorization List Management ----------------------------------------------------


def test_send_local_authorization_list_survives_power_loss(bench: Bench) -> None:
    assert send_local_list(bench, 3, "Full", [authorization(TOKEN), authorization(OTHER)]) == "Accepted"
    bench.kill()  # an Accepted list is already on disk
    bench.start()
    assert list_version(bench) == 3
    assert stored_list(bench) == {TOKEN: "Accepted", OTHER: "Accepted"}


# -- power loss -------------------------------------------------------------------------------


def test_power_failure_boot_charge_point_stop_transaction_power_loss(bench: Bench) -> None:
    configure(bench, MeterValueSampleInterval="1")
    bench.charge()
    csms_id = bench.wait("MeterValues", lambda p: "transactionId" in p)["transactionId"]
    mark = bench.mark()
    bench.wait("MeterValues", lambda p: p.get("transactionId") == csms_id, after=mark)
    bench.kill()
    seen = [energy(p) for p in bench.calls("MeterValues") if p.get("transactionId") == csms_id]

    mark = bench.mark()
    bench.start()
    stop = bench.wait("StopTransaction", after=mark, timeout=15)
    assert stop["transactionId"] == csms_id
    assert stop["reason"] == "PowerLoss"
    assert stop["meterStop"] >= math.floor(max(seen) - 0.05), (stop, max(seen))
    eventually(lambda: outbox_empty(bench), what="the StopTransaction to be acknowledged")
    # The EV still asks for energy, but without a transaction it gets none.
    # (The station's view starts at A and debounces the pilot: wait for it to see the EV.)
    status = bench.sim().wait_until(lambda s: s["cp_state"] == "C")
    assert not status["contactor_closed"] and status["transaction_id"] is None

    mark = bench.mark()
    bench.kill()
    bench.start()
    time.sleep(2.0)
    assert not [a for a, _ in tx_messages(bench, mark)], "messages sent again after a second restart"
    assert bench.csms.transactions[csms_id]["stop_count"] == 1
    assert [p for p in bench.calls("StopTransaction") if p["reason"] == "PowerLoss"] == [stop]


def test_power_failure_kill9_at_random_points_every_transaction_stopped_once(bench: Bench) -> None:
    seed = 16_0161
    print(f"kill -9 test seed {seed}")
    rnd = random.Random(seed)
    configure(bench, MeterValueSampleInterval="1")
    phases = ("plugged", "swiped", "charging", "unplugged")
    for _ in range(50):
        phase = rnd.choice(phases)
        delay = rnd.uniform(0.0, 1.5)
        rig = bench.sim()
        rig.plug(1)
        if phase != "plugged":
            rig.swipe(TOKEN)
        if phase in ("charging", "unplugged"):
            rig.charge(1, max_current_a=16)
        if phase == "unplugged":
            time.sleep(rnd.uniform(0.0, 0.5))
            rig.unplug(1)
        time.sleep(delay)
        bench.kill()
        bench.start(wait_boot=False)

    bench.sim().unplug(1)

    def settled() -> bool:
        return (
            bench.sim().status(1)["ocpp_connected"]
            and outbox_empty(bench)
            and bench.db("SELECT count(*) FROM transactions WHERE stopped_at IS NULL")[0][0] == 0
        )

    eventually(settled, timeout=60, what="the station to settle")
    time.sleep(1.0)
    transactions = bench.csms.transactions
    local = bench.db("SELECT id, csms_id, stop_reason FROM transactions")
    reasons = Counter(reason for _, _, reason in local)
    print(f"{len(local)} local transactions, {len(transactions)} at the CSMS; stops: {dict(reasons)}")
    assert transactions, "no transaction reached the CSMS"
    assert reasons["PowerLoss"] > 0, "no kill interrupted a transaction"
    # A kill between the CSMS's reply and the station deleting the message sends the same
    # StopTransaction again (at-least-once, as OCPP has it): that counts once; two
    # different stops for one transaction do not.
    distinct: dict[int, list[dict[str, object]]] = {}
    for stop in bench.calls("StopTransaction"):
        if stop not in distinct.setdefault(stop["transactionId"], []):
            distinct[stop["transactionId"]].append(stop)
    counts = {tx_id: len(distinct.get(tx_id, [])) for tx_id in transactions}
    wrong = {tx_id: n for tx_id, n in counts.items() if n != 1}
    assert not wrong, f"transactions not stopped exactly once (id: distinct stops): {wrong}"
    unknown = [p for p in bench.calls("StopTransaction") if p["transactionId"] not in transactions]
    assert not unknown, f"StopTransaction for unknown transactions: {unknown}"
    assert all(c is not None for _, c, _ in local), "a transaction never reached the CSMS"
    assert sorted(int(c) for _, c, _ in local) == sorted(transactions)
    for tx in transactions.values():
        assert tx["stop"]["meterStop"] >= tx["start"]["meterStart"], tx
