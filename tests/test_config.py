"""The config file contract (CONTRACTS section 2) as seen through `evse config check` (section 1).

Every broken config is written to a temporary directory, checked with the real command line
entry and must exit 78 while printing a line that names the offending key path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.config import EX_CONFIG, load

REPO = Path(__file__).resolve().parent.parent
DROP = object()  # as a value in an override: remove that key


# --- helpers: a minimal valid config as data, written out as TOML -------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # float("nan") -> nan, which is valid TOML
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def to_toml(data: dict[str, Any]) -> str:
    """Enough TOML for these tests: top-level keys, tables, arrays of tables, inline tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict | list)]
    for name, value in data.items():
        if isinstance(value, dict):
            lines += [f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines += [f"[[{name}]]"] + [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        elif isinstance(value, list):
            lines.insert(0, f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _apply(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def evse(n: int = 1, **changes: Any) -> dict[str, Any]:
    """One simulated [[evse]] table with id n; keyword arguments replace (or DROP) keys."""
    base = {
        "id": n,
        "max_current_a": 32,
        "phases": 3,
        "pilot": {"driver": "sim"},
        "contactor": {"driver": "sim"},
        "meter": {"driver": "sim"},
    }
    return _apply(base, changes)


def config(*, evses: list[Any] | None = None, **tables: Any) -> dict[str, Any]:
    """A minimal valid standalone config; each keyword replaces a whole table (or DROPs it)."""
    base: dict[str, Any] = {
        "station": {"id": "CP001"},
        "storage": {"dir": "var"},
        "evse": evses if evses is not None else [evse(1)],
        "sim": {"socket": "sim.sock"},
    }
    return _apply(base, tables)


def ocpp(**changes: Any) -> dict[str, Any]:
    """An [ocpp] table, security profile 0 unless changed."""
    return _apply({"version": "1.6", "url": "ws://127.0.0.1:9000/ocpp", "security_profile": 0}, changes)


PASSWORD = "0123456789abcdef"  # 16 characters: the shortest valid one


@pytest.fixture
def write(tmp_path: Path) -> Callable[[dict[str, Any] | str], Path]:
    def _write(content: dict[str, Any] | str) -> Path:
        path = tmp_path / "evse.toml"
        path.write_text(content if isinstance(content, str) else to_toml(content), encoding="utf-8")
        return path

    return _write


Check = Callable[[dict[str, Any] | str], tuple[int, list[str]]]


@pytest.fixture
def check(write: Callable[[dict[str, Any] | str], Path], capsys: pytest.CaptureFixture[str]) -> Check:
    """Write a config, run `evse config check` on it; return the exit code and the problem lines."""

    def _check(content: dict[str, Any] | str) -> tuple[int, list[str]]:
        path = write(content)
        capsys.readouterr()
        code = main(["config", "check", str(path)])
        err = capsys.readouterr().err
        return code, [line.strip() for line in err.splitlines()]

    return _check


def assert_problem(result: tuple[int, list[str]], *expected: str) -> None:
    """Exit 78 and one stderr line that starts with `expected[0]` and contains every other part."""
    code, lines = result
    assert code == EX_CONFIG, lines
    start, *parts = expected
    matching = [line for line in lines if line.startswith(start) and all(p in line for p in parts)]
    assert matching, f"no line starting {start!r} containing {parts!r} in:\n" + "\n".join(lines)


# --- the shipped example configs ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["evse.sim.toml", "evse.pi.toml"])
def test_shipped_example_config_is_valid(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(REPO / "config" / name)]) == 0
    out = capsys.readouterr()
    assert "valid" in out.out
    assert out.err == ""


def test_pi_example_uses_only_real_drivers_and_no_sim_table() -> None:
    cfg = load(REPO / "config" / "evse.pi.toml")
    assert not cfg.uses_sim()
    assert cfg.sim_socket is None
    assert cfg.ocpp is None  # the [ocpp] example is commented out
    assert cfg.storage_dir == Path("/var/lib/evse")
    assert cfg.auth["mode"] == "list" and cfg.auth["allow"]
    assert cfg.rfid is not None and cfg.rfid.driver == "rdm6300"
    (e,) = cfg.evses
    assert (e.pilot.driver, e.contactor.driver, e.rcd.driver, e.meter.driver) == (
        "pi",
        "gpio",
        "gpio",
        "modbus",
    )
    assert e.meter.options["port"] == "/dev/ttyUSB0" and e.meter.options["model"] == "sdm630"


def test_minimal_helper_config_is_valid(check: Check) -> None:
    assert check(config()) == (0, [])


# --- one broken thing at a time ----------------------------------------------------------------


def test_current_given_as_a_string_is_a_type_error(check: Check) -> None:
    result = check(config(evses=[evse(max_current_a="32")]))
    assert_problem(result, "evse 1: max_current_a:", "must be a number", "'32'")


def test_unknown_key_suggests_the_close_match(check: Check) -> None:
    broken = evse(max_current_a=DROP, max_curent_a=32)
    assert_problem(
        check(config(evses=[broken])), 'evse 1: max_curent_a: unknown key; did you mean "max_current_a"?'
    )


def test_misspelt_meter_driver_key_suggests_the_close_match(check: Check) -> None:
    meter = {"driver": "modbus", "model": "sdm630", "port": "/dev/ttyUSB0", "baudrat": 9600}
    assert_problem(
        check(config(evses=[evse(meter=meter)])), "evse 1: meter.baudrat:", 'did you mean "baudrate"?'
    )


def test_unknown_top_level_table_suggests_the_close_match(check: Check) -> None:
    assert_problem(
        check(config(stations={"id": "CP002"})), "stations: unknown key", 'did you mean "station"?'
    )


def test_unknown_key_without_close_match_lists_the_valid_keys(check: Check) -> None:
    assert_problem(
        check(config(station={"id": "CP001", "colour": "red"})), "station.colour:", "valid keys:", "vendor"
    )


def test_bad_meter_baudrate_names_the_evse_and_the_choices(check: Check) -> None:
    meter = {"driver": "modbus", "model": "sdm630", "port": "/dev/ttyUSB0", "baudrate": 9601}
    assert_problem(check(config(evses=[evse(meter=meter)])), "evse 1: meter.baudrate: must be one of", "9600")


def test_missing_station_id_is_reported(check: Check) -> None:
    assert_problem(check(config(station={"vendor": "ExampleVendor"})), "station.id: missing")


def test_missing_required_tables_are_each_reported(check: Check) -> None:
    code, lines = check(config(station=DROP, storage=DROP, evse=DROP))
    assert code == EX_CONFIG
    for table in ("station", "storage", "evse"):
        assert any(line.startswith(f"{table}: missing") for line in lines), lines


def test_invalid_station_id_characters_are_rejected(check: Check) -> None:
    assert_problem(check(config(station={"id": "CP 001/x"})), "station.id:", "1 to 48 characters")


def test_duplicate_evse_id_is_reported(check: Check) -> None:
    assert_problem(check(config(evses=[evse(1), evse(1)])), "evse 1: id: duplicate evse id 1")


def test_evse_ids_must_count_from_one_in_file_order(check: Check) -> None:
    assert_problem(check(config(evses=[evse(2), evse(1)])), "evse 2: id: must be 1")
    assert_problem(check(config(evses=[evse(1), evse(3)])), "evse 3: id: must be 2")


def test_evse_id_zero_gives_a_readable_range(check: Check) -> None:
    result = check(config(evses=[evse(0)]))
    assert_problem(result, "evse 0: id: must be at least 1 (got 0)")
    assert not any("None" in line for line in result[1])


def test_evse_that_is_not_a_table_is_reported_once_cleanly(check: Check) -> None:
    code, lines = check('evse = [1]\n[station]\nid = "CP001"\n[storage]\ndir = "var"\n')
    assert code == EX_CONFIG
    assert "evse #1 (no valid id): must be a table (got integer 1)" in lines


def test_unknown_driver_name_is_reported_with_the_valid_ones(check: Check) -> None:
    result = check(config(evses=[evse(pilot={"driver": "gpioo"})]))
    assert_problem(result, "evse 1: pilot.driver: must be one of", "'sim'", "'pi'", "'gpioo'")


def test_driver_that_is_not_a_string_is_reported_not_a_crash(check: Check) -> None:
    result = check(config(evses=[evse(contactor={"driver": ["gpio"]})]))
    assert_problem(result, "evse 1: contactor.driver: must be one of", "['gpio']")


def test_missing_pilot_table_is_reported(check: Check) -> None:
    assert_problem(check(config(evses=[evse(pilot=DROP)])), "evse 1: pilot: missing")


def test_current_above_the_hardware_range_is_rejected(check: Check) -> None:
    assert_problem(
        check(config(evses=[evse(max_current_a=100)])), "evse 1: max_current_a: must be from 6 to 80"
    )


def test_current_below_six_amperes_is_rejected(check: Check) -> None:
    assert_problem(
        check(config(evses=[evse(max_current_a=5.5)])), "evse 1: max_current_a: must be from 6 to 80"
    )


def test_current_nan_is_rejected(check: Check) -> None:
    assert_problem(check(config(evses=[evse(max_current_a=float("nan"))])), "evse 1: max_current_a:", "nan")


def test_boolean_is_not_a_number(check: Check) -> None:
    assert_problem(check(config(evses=[evse(phases=True)])), "evse 1: phases: must be a whole number")


def test_two_phases_is_rejected(check: Check) -> None:
    assert_problem(check(config(evses=[evse(phases=2)])), "evse 1: phases: must be one of 1, 3 (got 2)")


def test_gpio_pin_out_of_range_is_rejected(check: Check) -> None:
    contactor = {"driver": "gpio", "pin": 40, "feedback_pin": 27}
    pilot = {"driver": "pi"}
    result = check(config(evses=[evse(pilot=pilot, contactor=contactor, meter={"driver": "sim"})]))
    assert_problem(result, "evse 1: contactor.pin: must be from 0 to 27 (got 40)")


def test_sim_driver_without_sim_table_is_reported(check: Check) -> None:
    assert_problem(check(config(sim=DROP)), "sim.socket: missing", "[sim]")


def test_sim_rfid_reader_alone_needs_the_sim_table(check: Check) -> None:
    real = evse(
        pilot={"driver": "pi"},
        contactor={"driver": "gpio", "pin": 17},
        meter={"driver": "modbus", "model": "sdm630", "port": "/dev/ttyUSB0"},
    )
    assert check(config(evses=[real], sim=DROP)) == (0, [])
    assert_problem(check(config(evses=[real], sim=DROP, rfid={"driver": "sim"})), "sim.socket: missing")


def test_simulated_connector_lock_is_valid_and_needs_the_sim_table(check: Check) -> None:
    real = evse(
        pilot={"driver": "pi"},
        contactor={"driver": "gpio", "pin": 17},
        meter={"driver": "modbus", "model": "sdm630", "port": "/dev/ttyUSB0"},
    )
    assert check(config(evses=[evse(lock={"driver": "sim"})])) == (0, [])
    result = check(config(evses=[_apply(real, {"lock": {"driver": "sim"}})], sim=DROP))
    assert_problem(result, "sim.socket: missing")


def test_modbus_meter_needs_a_port_or_a_host(check: Check) -> None:
    result = check(config(evses=[evse(meter={"driver": "modbus", "model": "sdm630"})]))
    assert_problem(result, "evse 1: meter:", "port", "host")


def test_modbus_meter_with_both_port_and_host_is_ambiguous(check: Check) -> None:
    meter = {"driver": "modbus", "model": "sdm630", "port": "/dev/ttyUSB0", "host": "192.0.2.10"}
    assert_problem(check(config(evses=[evse(meter=meter)])), "evse 1: meter:", "exactly one of port")


def test_modbus_meter_model_is_required(check: Check) -> None:
    result = check(config(evses=[evse(meter={"driver": "modbus", "port": "/dev/ttyUSB0"})]))
    assert_problem(result, "evse 1: meter.model: missing")


def test_plain_ws_url_with_tls_profile_is_rejected(check: Check) -> None:
    result = check(config(ocpp=ocpp(security_profile=2, password=PASSWORD)))
    assert_problem(result, "ocpp.url:", "security profile 2", "wss://")


def test_wss_url_without_tls_profile_is_rejected(check: Check) -> None:
    result = check(
        config(ocpp=ocpp(url="wss://csms.example.com/ocpp", security_profile=1, password=PASSWORD))
    )
    assert_problem(result, "ocpp.security_profile:", "wss://")


def test_profile_one_password_shorter_than_16_is_rejected(check: Check) -> None:
    result = check(config(ocpp=ocpp(security_profile=1, password="short")))
    assert_problem(result, "ocpp.password:", "16 to 40 characters", "got 5")


def test_profile_one_password_longer_than_40_is_rejected(check: Check) -> None:
    result = check(config(ocpp=ocpp(security_profile=1, password="x" * 41)))
    assert_problem(result, "ocpp.password:", "16 to 40 characters", "got 41")


def test_profile_one_password_of_16_characters_is_accepted(check: Check) -> None:
    assert check(config(ocpp=ocpp(security_profile=1, password=PASSWORD))) == (0, [])


def test_ca_file_that_does_not_exist_is_reported_with_its_path(check: Check, tmp_path: Path) -> None:
    table = ocpp(
        url="wss://csms.example.com/ocpp", security_profile=2, password=PASSWORD, ca_file="csms-ca.pem"
    )
    assert_problem(
        check(config(ocpp=table)), "ocpp.ca_file:", str(tmp_path / "csms-ca.pem"), "does not exist"
    )


def test_ca_file_that_exists_next_to_the_config_is_accepted(check: Check, tmp_path: Path) -> None:
    (tmp_path / "csms-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    table = ocpp(
        url="wss://csms.example.com/ocpp", security_profile=2, password=PASSWORD, ca_file="csms-ca.pem"
    )
    assert check(config(ocpp=table)) == (0, [])


def test_profile_three_needs_client_certificate_and_key(check: Check) -> None:
    code, lines = check(config(ocpp=ocpp(url="wss://csms.example.com/ocpp", security_profile=3)))
    assert_problem((code, lines), "ocpp.cert_file:", "client certificate")
    assert_problem((code, lines), "ocpp.key_file:", "client certificate")


def test_bad_ocpp_url_scheme_is_rejected(check: Check) -> None:
    assert_problem(check(config(ocpp=ocpp(url="http://csms.example.com/ocpp"))), "ocpp.url:", "ws://")


def test_ocpp_auth_mode_without_ocpp_table_is_rejected(check: Check) -> None:
    assert_problem(check(config(auth={"mode": "ocpp"})), "auth.mode:", "[ocpp]")


def test_free_mode_with_ocpp_table_is_valid(check: Check) -> None:
    assert check(config(auth={"mode": "free"}, ocpp=ocpp())) == (0, [])


def test_firmware_files_are_checked_only_with_an_ocpp_table(check: Check) -> None:
    firmware = {"signing_ca_file": "firmware-ca.pem", "install_command": "install-firmware"}
    assert check(config(firmware=firmware)) == (0, [])
    code, lines = check(config(firmware=firmware, ocpp=ocpp()))
    assert_problem((code, lines), "firmware.signing_ca_file:", "does not exist")
    assert_problem((code, lines), "firmware.install_command:", "does not exist")


def test_install_command_must_be_executable(check: Check, tmp_path: Path) -> None:
    (tmp_path / "install-firmware").write_text("#!/bin/sh\n")
    result = check(config(firmware={"install_command": "install-firmware"}, ocpp=ocpp()))
    assert_problem(result, "firmware.install_command:", "not executable")


def test_invalid_toml_syntax_is_reported_with_the_path(check: Check, tmp_path: Path) -> None:
    result = check('[station]\nid = "CP001\n')
    assert_problem(result, str(tmp_path / "evse.toml"), "not valid TOML")


def test_non_utf8_file_is_reported_with_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[station]\nid = "CP\xe9"\n')
    assert main(["config", "check", str(path)]) == EX_CONFIG
    assert f"{path}: not UTF-8" in capsys.readouterr().err


def test_missing_config_file_names_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nowhere" / "evse.toml"
    assert main(["config", "check", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert f"{path}: no such file" in err


def test_directory_instead_of_a_file_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", str(tmp_path)]) == EX_CONFIG
    assert f"{tmp_path}: cannot read" in capsys.readouterr().err


def test_empty_storage_dir_is_rejected(check: Check) -> None:
    assert_problem(check(config(storage={"dir": ""})), "storage.dir:", "at least 1")


def test_long_sim_socket_path_is_rejected(check: Check) -> None:
    assert_problem(check(config(sim={"socket": "s" * 120})), "sim.socket:", "longer than 107 bytes")


def test_rfid_token_list_entries_must_be_strings(check: Check) -> None:
    assert_problem(check(config(auth={"mode": "list", "allow": ["04A1B2C3", 42]})), "auth.allow:", "42")


# --- all problems at once ----------------------------------------------------------------------


def test_every_problem_is_reported_at_once(check: Check) -> None:
    broken = config(
        station={"vendor": "ExampleVendor"},  # 1: station.id missing
        auth={"mode": "ocpp"},  # 2: ocpp mode without [ocpp]
        sim=DROP,  # 3: sim drivers without [sim]
        evses=[
            evse(1, max_current_a="32", phases=2),  # 4, 5
            evse(3, pilot={"driver": "gpioo"}),  # 6: id not 2, 7: bad driver
        ],
    )
    code, lines = check(broken)
    assert code == EX_CONFIG
    expected = [
        "station.id: missing",
        "auth.mode:",
        "sim.socket: missing",
        "evse 1: max_current_a:",
        "evse 1: phases:",
        "evse 3: id: must be 2",
        "evse 3: pilot.driver:",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in lines), (start, lines)
    header, *problems = lines
    assert header.endswith(f"{len(expected)} problem(s):")
    assert len(problems) == len(expected), problems


# --- the real console entry --------------------------------------------------------------------


def test_console_entry_exits_78_on_a_broken_config_and_0_on_a_valid_one(
    write: Callable[[dict[str, Any] | str], Path],
) -> None:
    def run(path: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "controller", "config", "check", str(path)]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)

    broken = run(write(config(evses=[evse(phases=2)])))
    assert broken.returncode == EX_CONFIG, broken.stderr
    assert "evse 1: phases:" in broken.stderr
    assert "Traceback" not in broken.stderr

    valid = run(write(config()))
    assert valid.returncode == 0, valid.stderr
    assert "valid" in valid.stdout


# --- what load() returns -----------------------------------------------------------------------


def test_relative_storage_dir_and_sim_socket_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    path = config_dir / "evse.toml"
    path.write_text(to_toml(config(storage={"dir": "state"}, sim={"socket": "run/sim.sock"})))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load(Path("..") / "etc" / "evse.toml")  # a relative path to the file, from another directory
    assert cfg.storage_dir == config_dir.resolve() / "state"
    assert cfg.sim_socket == config_dir.resolve() / "run" / "sim.sock"


def test_absolute_storage_dir_is_kept(write: Callable[[dict[str, Any] | str], Path]) -> None:
    cfg = load(write(config(storage={"dir": "/var/lib/evse"})))
    assert cfg.storage_dir == Path("/var/lib/evse")


def test_trailing_slash_on_ocpp_url_is_removed(write: Callable[[dict[str, Any] | str], Path]) -> None:
    cfg = load(write(config(ocpp=ocpp(url="ws://127.0.0.1:9000/ocpp/"))))
    assert cfg.ocpp is not None
    assert cfg.ocpp["url"] == "ws://127.0.0.1:9000/ocpp"


def test_auth_mode_defaults_follow_the_ocpp_table(write: Callable[[dict[str, Any] | str], Path]) -> None:
    assert load(write(config())).auth["mode"] == "free"
    assert load(write(config(ocpp=ocpp()))).auth["mode"] == "ocpp"


def test_defaults_are_filled_in_for_driver_options(write: Callable[[dict[str, Any] | str], Path]) -> None:
    real = evse(
        pilot={"driver": "pi"},
        contactor={"driver": "gpio", "pin": 17},
        meter={"driver": "modbus", "model": "sdm630", "host": "192.0.2.10"},
    )
    (e,) = load(write(config(evses=[real], sim=DROP))).evses
    assert e.pilot.options["adc_address"] == 0x48
    assert e.contactor.options == {
        "pin": 17,
        "feedback_pin": -1,
        "feedback": "no",
        "feedback_timeout_s": 0.5,
        "min_close_interval_s": 1.0,
    }
    assert e.meter.options["tcp_port"] == 502 and e.meter.options["unit_id"] == 1
    assert e.rcd.driver == "none"  # real pilot: no simulated RCD by default


def test_a_nul_character_in_a_path_is_refused(tmp_path: Path) -> None:
    from controller.config import ConfigError, parse

    data = {
        "station": {"id": "CP1"},
        "storage": {"dir": "state\x00x"},
        "evse": [
            {
                "id": 1,
                "max_current_a": 16,
                "pilot": {"driver": "sim"},
                "contactor": {"driver": "sim"},
                "meter": {"driver": "sim"},
            }
        ],
        "sim": {"socket": "s.sock"},
    }
    with pytest.raises(ConfigError) as caught:
        parse(data, tmp_path / "evse.toml")
    assert any(p.startswith("storage.dir: must not contain a NUL") for p in caught.value.problems)


@pytest.mark.parametrize("url", ["ws://csms.example.com:99999/ocpp", "ws://[::1/ocpp"])
def test_an_ocpp_url_the_websocket_cannot_use_is_rejected(check: Check, url: str) -> None:
    assert_problem(check(config(ocpp=ocpp(url=url))), "ocpp.url:", "ws://")
