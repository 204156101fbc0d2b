"""`evse doctor`: check every configured device and say how to fix what fails.

Nothing switches power unless ``actuate`` is set, and even then doctor does not command
the contactor itself: it runs a control loop (``controller.safety.control``) over the
pilot, the contactor and the residual-current sensor and asks its supervisor for one
contactor test, which the supervisor grants only on fresh pilot readings of state A (no
EV) with no fault, and judges by the feedback as it judges a charging session. The pilot
is driven to its idle level (+12 V), which is what the daemon does at start. Run it with
the daemon stopped: it opens the same devices.
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from controller.config import Config
from controller.safety.control import ControlLoop, EvseChannel
from controller.safety.pilot import CpState, PilotMode, classify
from controller.safety.rcd import TRIP_S, RcdSelfTest
from controller.safety.supervisor import TEST_GRANT_S, ContactorTest, Fault, Supervisor
from drivers.base import (
    ContactorDriver,
    DriverError,
    PilotDriver,
    ResidualCurrentDriver,
    SelfTestingResidualCurrent,
)
from drivers.registry import HARDWARE, release

# Causes we recognise in an error message, and what a technician does about them.
FIXES: tuple[tuple[str, str], ...] = (
    ("dtoverlay", "add dtoverlay=pwm,pin=18,func=2 (or pwm-2chan) to /boot/firmware/config.txt, reboot"),
    (
        "pin factory",
        "not a Raspberry Pi, or lgpio missing: sudo apt-get install python3-lgpio (make install-deps does)",
    ),
    (
        "serial port",
        "check the port exists (ls /dev/ttyUSB* /dev/serial*) and the evse user is in group dialout",
    ),
    ("/dev/i2c", "enable I2C (sudo raspi-config nonint do_i2c 0) and add the evse user to group i2c"),
    ("Permission denied", "add the evse user to the group owning the device (gpio, i2c, dialout)"),
    ("No such file", "check the device path in the config; is the adapter plugged in?"),
    ("unit id", "check the meter's Modbus address (unit_id), baud rate, parity and the A/B wiring"),
    ("does not answer", "check the wiring, the address and the supply of the device"),
    ("timed out", "check the wiring, baud rate and the device address"),
)


CONTACTOR_TEST_HZ = 50  # the sampling rate of doctor's control loop (the daemon's default)
OVER = frozenset({ContactorTest.PASSED, ContactorTest.FAILED, ContactorTest.ABORTED, ContactorTest.REFUSED})


@dataclass
class Check:
    device: str
    ok: bool | None  # None: not tested (skipped or informational)
    detail: str
    fix: str = ""


def fix_for(message: str) -> str:
    for needle, fix in FIXES:
        if needle.lower() in message.lower():
            return fix
    return "see the message; `journalctl -u evse` has the daemon's view"


def _failed(device: str, exc: BaseException) -> Check:
    message = str(exc) or type(exc).__name__
    return Check(device, False, message, fix_for(message))


def check_storage(config: Config) -> Check:
    path = config.storage_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".doctor"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check(
            "storage",
            False,
            f"{path}: {exc.strerror}",
            "create it and give the evse user write access (make install does)",
        )
    return Check("storage", True, f"{path} writable")


def check_pilot(name: str, options: dict[str, Any]) -> tuple[Check, CpState | None]:
    try:
        pilot = HARDWARE[("pilot", "pi")](options)
    except (DriverError, OSError) as exc:
        return _failed(name, exc), None
    try:
        pilot.set_output(PilotMode.STEADY, 100.0)
        time.sleep(0.05)
        sample = pilot.sample()
        state = classify(sample.high_v)
        detail = f"+12 V out, reads {sample.high_v:+.2f} V / {sample.low_v:+.2f} V = state {state or '?'}"
        if state is CpState.A:
            return Check(name, True, detail), state
        if state in (CpState.B, CpState.C, CpState.D):
            return Check(
                name,
                None,
                detail + " (an EV is connected)",
                "unplug the EV to check the pilot against state A",
            ), state
        return Check(
            name,
            False,
            detail,
            "expected about +12 V (A) with no EV: calibrate adc_scale "
            "and adc_offset_v, check the divider and the amplifier supply",
        ), state
    except (DriverError, OSError) as exc:
        return _failed(name, exc), None
    finally:
        release(pilot)


def check_contactor(
    name: str,
    options: dict[str, Any],
    actuate: bool,
    pilot: Callable[[], PilotDriver] | None,
    rcd: Callable[[], ResidualCurrentDriver] | None = None,
) -> Check:
    """Feedback at rest; with ``actuate``, one contactor test through a control loop.

    ``pilot`` and ``rcd`` open those drivers (None: not readable here); the test sees
    the pilot as the control loop samples it then, never an earlier reading.
    """
    try:
        contactor = HARDWARE[("contactor", "gpio")](options)
    except (DriverError, OSError, Exception) as exc:
        return _failed(name, exc)
    try:
        if options.get("feedback_pin", -1) < 0:
            return Check(
                name,
                None,
                "relay ready; no feedback pin: welds cannot be detected",
                "wire the auxiliary contact and set feedback_pin",
            )
        if contactor.feedback_closed():
            return Check(
                name,
                False,
                "feedback says closed while the relay is off",
                'a welded contactor or feedback = "no"/"nc" set wrong: inspect before use',
            )
        if not actuate:
            return Check(name, True, "open, feedback agrees (--actuate also switches it)")
        if pilot is None:
            return _not_switched(name)
        return _contactor_test(name, options, contactor, pilot, rcd)
    finally:
        release(contactor)


def _not_switched(name: str) -> Check:
    return Check(
        name,
        None,
        "not switched: the pilot does not read A (no EV)",
        "unplug any vehicle, then run again with --actuate",
    )


def _contactor_test(
    name: str,
    options: dict[str, Any],
    contactor: ContactorDriver,
    open_pilot: Callable[[], PilotDriver],
    open_rcd: Callable[[], ResidualCurrentDriver] | None,
) -> Check:
    """Ask a control loop's supervisor for one contactor test and report its verdict."""
    try:
        pilot = open_pilot()
    except (DriverError, OSError) as exc:
        return _failed(name, exc)
    try:
        rcd = open_rcd() if open_rcd is not None else None
    except (DriverError, OSError, Exception) as exc:
        release(pilot)
        return _failed(name, exc)
    feedback_timeout_s = float(options.get("feedback_timeout_s", 0.5))
    supervisor = Supervisor(
        max_current_a=0.0,  # nothing is offered: no PWM
        feedback_timeout_s=feedback_timeout_s,
        min_close_interval_s=float(options.get("min_close_interval_s", 0.0)),
    )
    channel = EvseChannel(0, supervisor, pilot, contactor, rcd)
    loop = ControlLoop([channel], CONTACTOR_TEST_HZ, lambda _evse, _view: None)
    # Granted within TEST_GRANT_S or refused; then the feedback has a timeout each way.
    deadline = time.monotonic() + TEST_GRANT_S + 3 * feedback_timeout_s + 1.0
    channel.test_contactor = True
    loop.start()
    try:
        while channel.contactor_test not in OVER and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        channel.test_contactor = False
        loop.stop()  # its make_safe leaves the contactor open and the pilot released
        if rcd is not None:
            release(rcd)
    verdict = channel.contactor_test
    faults = channel.view.faults if channel.view is not None else frozenset()
    return _test_check(name, verdict, faults)


def _test_check(name: str, verdict: ContactorTest, faults: frozenset[Fault]) -> Check:
    wiring = "check the coil supply, the relay and the auxiliary contact wiring"
    if verdict is ContactorTest.PASSED:
        return Check(name, True, "closed and opened, feedback followed both")
    if Fault.CONTACTOR_STUCK in faults:
        return Check(name, False, "feedback did not close", wiring)
    if Fault.CONTACTOR_WELD in faults:
        return Check(name, False, "feedback stayed closed", wiring)
    if faults:
        return Check(
            name,
            False,
            f"not switched, or opened early: fault {', '.join(sorted(faults))}",
            "run doctor without --actuate to find the device at fault",
        )
    if verdict is ContactorTest.ABORTED:
        return Check(
            name,
            None,
            "opened early: the pilot left A (an EV?)",
            "unplug any vehicle, then run again with --actuate",
        )
    if verdict in (ContactorTest.CLOSED, ContactorTest.OPENING):
        return Check(name, False, "the control loop did not finish the test in time", wiring)
    return _not_switched(name)


def rcd_self_test(
    rcd: SelfTestingResidualCurrent,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """The sensor's self-test in one blocking call, stepped as the control loop steps it."""
    test = RcdSelfTest()
    rcd.test_on()
    test.start(clock())
    try:
        while (passed := test.step(clock(), rcd.tripped())) is None:
            if not test.test_input:
                rcd.test_off()
            sleep(0.001)
    finally:
        rcd.test_off()
    return passed


def check_rcd(name: str, options: dict[str, Any], actuate: bool) -> Check:
    try:
        rcd = HARDWARE[("rcd", "gpio")](options)
    except (DriverError, OSError, Exception) as exc:
        return _failed(name, exc)
    try:
        if rcd.tripped():
            return Check(name, False, "reports a trip now", "find the residual current, check active_high")
        if actuate and options.get("test_pin", -1) >= 0:
            if rcd_self_test(rcd):
                return Check(name, True, "self-test tripped in time")
            return Check(
                name,
                False,
                f"self-test failed: no trip within {TRIP_S:g} s, or no release after",
                "check the test input wiring and the module",
            )
        return Check(name, True, "not tripped")
    finally:
        release(rcd)


async def _read_meter(options: dict[str, Any]) -> str:
    meter = HARDWARE[("meter", "modbus")](options)
    try:
        r = await asyncio.wait_for(meter.read(), float(options.get("timeout_s", 1.0)) + 2)
        volts = "/".join(f"{v:.0f}" for v in r.voltage_v)
        return (
            f"{volts} V, {max(r.current_a, default=0):.1f} A, {r.power_w:.0f} W, {r.energy_wh / 1000:.3f} kWh"
        )
    finally:
        await meter.close()


def check_meter(name: str, options: dict[str, Any]) -> Check:
    try:
        return Check(name, True, asyncio.run(_read_meter(options)))
    except (DriverError, OSError, TimeoutError, Exception) as exc:
        return _failed(name, exc)


async def _wait_card(driver: str, options: dict[str, Any], seconds: float) -> str | None:
    from drivers.rfid_serial import build_rfid

    reader = build_rfid(driver, options)
    try:
        tokens = reader.tokens()
        return await asyncio.wait_for(anext(tokens), seconds)
    except TimeoutError:
        return None
    finally:
        await reader.close()


def check_rfid(config: Config, card_seconds: float) -> Check:
    assert config.rfid is not None
    options, driver = config.rfid.options, config.rfid.driver
    port = Path(str(options.get("port", "")))
    if not port.exists():
        return Check("rfid", False, f"{port} does not exist", fix_for("No such file"))
    if not os.access(port, os.R_OK | os.W_OK):
        return Check("rfid", False, f"{port}: Permission denied", fix_for("Permission denied"))
    if card_seconds <= 0:
        return Check("rfid", None, f"{port} accessible (--card-seconds N waits for a card)")
    try:
        token = asyncio.run(_wait_card(driver, options, card_seconds))
    except (DriverError, OSError) as exc:
        return _failed("rfid", exc)
    if token is None:
        return Check(
            "rfid",
            False,
            f"no card read in {card_seconds:g} s",
            f"check the reader's supply and TX wiring, and baudrate ({options.get('baudrate')})",
        )
    return Check("rfid", True, f"card {token}")


def run(config: Config, actuate: bool = False, card_seconds: float = 0.0) -> list[Check]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gpiozero's pin-factory fallbacks: the checks say it
        return _run(config, actuate, card_seconds)


def _run(config: Config, actuate: bool, card_seconds: float) -> list[Check]:
    checks = [check_storage(config)]
    for evse in config.evses:
        prefix = f"evse {evse.id} "
        pilot = rcd = None
        if evse.pilot.driver == "pi":
            checks.append(check_pilot(prefix + "pilot", evse.pilot.options)[0])
            pilot = partial(HARDWARE[("pilot", "pi")], evse.pilot.options)
        if evse.rcd.driver == "gpio":  # before any switching
            checks.append(check_rcd(prefix + "rcd", evse.rcd.options, actuate))
            rcd = partial(HARDWARE[("rcd", "gpio")], evse.rcd.options)
        if evse.contactor.driver == "gpio":
            checks.append(check_contactor(prefix + "contactor", evse.contactor.options, actuate, pilot, rcd))
        for kind in ("lock", "watchdog"):
            if getattr(evse, kind).driver not in ("none", "sim"):
                checks.append(
                    Check(
                        prefix + kind,
                        None,
                        "configured; not exercised by doctor",
                        "check it on the bench (a watchdog board also needs the daemon)",
                    )
                )
        if evse.meter.driver == "modbus":
            checks.append(check_meter(prefix + "meter", evse.meter.options))
        for kind in ("pilot", "contactor", "rcd", "meter", "lock"):
            if getattr(evse, kind).driver == "sim":
                checks.append(Check(prefix + kind, True, "simulated"))
    if config.rfid is not None:
        if config.rfid.driver == "sim":
            checks.append(Check("rfid", True, "simulated"))
        else:
            checks.append(check_rfid(config, card_seconds))
    return checks


def render(checks: list[Check]) -> str:
    width = max(len(c.device) for c in checks)
    lines = [f"{'device':<{width}}  result  detail"]
    for c in checks:
        result = {True: "pass", False: "FAIL", None: "info"}[c.ok]
        lines.append(f"{c.device:<{width}}  {result:<6}  {c.detail}")
        if c.fix:
            lines.append(f"{'':<{width}}  {'':<6}  fix: {c.fix}")
    return "\n".join(lines)
