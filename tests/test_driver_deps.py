"""A configured driver whose Python package is missing is a config error that names the
package (exit 78, CONTRACTS section 1), never a traceback. Each case runs `evse` in a
subprocess whose import system cannot find the package (``sys.modules[name] = None``)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from controller.config import DRIVER_PACKAGES, EX_CONFIG, PACKAGES, missing_package

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """\
[station]
id = "CP001"

[storage]
dir = "var"

{rfid}
[[evse]]
id = 1
max_current_a = 32
pilot = {pilot}
contactor = {contactor}
meter = {meter}

[sim]
socket = "var/sim.sock"
"""
SIM = '{ driver = "sim" }'
MODBUS = '{ driver = "modbus", model = "sdm630", port = "/dev/ttyUSB0" }'


def evse(tmp_path: Path, *args: str, blocked: tuple[str, ...] = (), **devices: str) -> tuple[int, str]:
    """Run `evse ARGS` (a config path ``{config}`` filled in) without the ``blocked`` modules."""
    fields = {"pilot": SIM, "contactor": SIM, "meter": SIM, "rfid": ""} | devices
    config = tmp_path / "evse.toml"
    config.write_text(CONFIG.format(**fields))
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from controller.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = [a.format(config=config) for a in args]
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    return result.returncode, result.stdout + result.stderr


def test_config_check_names_the_missing_modbus_package(tmp_path: Path) -> None:
    code, out = evse(tmp_path, "config", "check", "{config}", blocked=("pymodbus",), meter=MODBUS)
    assert code == EX_CONFIG, out
    assert (
        """evse 1: meter.driver: "modbus" needs the Python package pymodbus: """
        "pip install 'pymodbus>=3.10,<3.12'"
    ) in out
    assert "Traceback" not in out


def test_run_exits_78_on_the_missing_modbus_package(tmp_path: Path) -> None:
    code, out = evse(tmp_path, "run", "--config", "{config}", blocked=("pymodbus",), meter=MODBUS)
    assert code == EX_CONFIG, out
    assert "needs the Python package pymodbus" in out and "Traceback" not in out


@pytest.mark.parametrize("reader", ["rdm6300", "pn532"])
def test_a_serial_rfid_reader_without_pyserial_is_a_config_error(tmp_path: Path, reader: str) -> None:
    rfid = f'[rfid]\ndriver = "{reader}"\nport = "/dev/ttyAMA0"\n'
    code, out = evse(tmp_path, "config", "check", "{config}", blocked=("serial",), rfid=rfid)
    assert code == EX_CONFIG, out
    assert f"rfid.driver: \"{reader}\" needs the Python package pyserial: pip install 'pyserial>=3.5'" in out
    assert "Traceback" not in out


def test_the_pi_drivers_without_their_extras_are_config_errors(tmp_path: Path) -> None:
    """gpiozero and smbus2 stay in the [pi] extra; without them every Pi driver says so."""
    code, out = evse(
        tmp_path,
        "config",
        "check",
        "{config}",
        blocked=("gpiozero", "smbus2"),
        pilot='{ driver = "pi", pwm = "gpiozero" }',
        contactor='{ driver = "gpio", pin = 17 }',
    )
    assert code == EX_CONFIG, out
    problems = [line.strip() for line in out.splitlines() if "needs the Python package" in line]
    assert problems == [
        """evse 1: pilot.driver: "pi" needs the Python package smbus2: pip install 'smbus2>=0.4'""",
        """evse 1: pilot.pwm: "gpiozero" needs the Python package gpiozero: pip install 'gpiozero>=2.0'""",
        """evse 1: contactor.driver: "gpio" needs the Python package gpiozero: pip install 'gpiozero>=2.0'""",
    ], out


def test_the_same_config_is_valid_with_the_packages_installed(tmp_path: Path) -> None:
    rfid = '[rfid]\ndriver = "pn532"\n'
    code, out = evse(tmp_path, "config", "check", "{config}", meter=MODBUS, rfid=rfid)
    assert code == 0, out


def test_a_simulated_station_needs_none_of_the_hardware_packages(tmp_path: Path) -> None:
    code, out = evse(tmp_path, "config", "check", "{config}", blocked=tuple(PACKAGES))
    assert code == 0, out


def test_the_driver_registry_names_the_package_when_its_import_fails(tmp_path: Path) -> None:
    """The daemon builds drivers after the config check; a library that vanished or breaks
    meanwhile is a DriverError naming it (a start-up error), not a traceback."""
    code = (
        "import sys\n"
        "sys.modules['pymodbus'] = None\n"
        "from drivers.base import DriverError\n"
        "from drivers.registry import HARDWARE\n"
        "try:\n"
        "    HARDWARE[('meter', 'modbus')]({})\n"
        "except DriverError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "needs the Python package pymodbus: pip install 'pymodbus>=3.10,<3.12'"


def _requirements() -> dict[str, list[str]]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"core": project["dependencies"], **project["optional-dependencies"]}


def test_pymodbus_and_pyserial_are_core_dependencies_and_the_hints_match_pyproject() -> None:
    """`pip install` of the project drives a Modbus meter and a serial RFID reader; the Pi-only
    libraries stay in the [pi] extra. Every hint names the version pyproject.toml requires."""
    requirements = _requirements()
    assert PACKAGES["pymodbus"] in requirements["core"]
    assert PACKAGES["serial"] in requirements["core"]
    assert PACKAGES["gpiozero"] in requirements["pi"]
    assert PACKAGES["smbus2"] in requirements["pi"]
    assert {m for needs in DRIVER_PACKAGES.values() for m in needs} == set(PACKAGES)


def test_an_installed_package_is_not_reported() -> None:
    assert all(missing_package(module) is None for module in PACKAGES)
    assert all(re.fullmatch(r"[a-z0-9]+[<>=!~].*", requirement) for requirement in PACKAGES.values())
