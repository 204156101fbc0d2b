"""The configuration file: its schema as data, and one validator that reports everything.

``load(path)`` reads TOML, checks every key against ``SCHEMA`` and the cross-key rules
in ``_check_rules``, and either returns a ``Config`` or raises ``ConfigError`` carrying
every problem found, each naming its key path (``evse 1: meter.baudrate: ...``).
Relative paths in the file are taken relative to the file's own directory.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

EX_CONFIG = 78
DEFAULT_PATH = Path("/etc/evse/evse.toml")
REQUIRED = object()
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL


# The Python packages real drivers import: import name -> what to install. pyproject.toml
# requires the same: pymodbus and pyserial always, gpiozero and smbus2 (Pi only) in the
# [pi] extra. A configured driver whose package is missing is a config error naming it.
PACKAGES = {
    "pymodbus": "pymodbus>=3.10,<3.12",
    "serial": "pyserial>=3.5",
    "gpiozero": "gpiozero>=2.0",
    "smbus2": "smbus2>=0.4",
}
DRIVER_PACKAGES: dict[tuple[str, str], tuple[str, ...]] = {
    ("pilot", "pi"): ("smbus2",),  # and gpiozero with pwm = "gpiozero"
    ("contactor", "gpio"): ("gpiozero",),
    ("rcd", "gpio"): ("gpiozero",),
    ("watchdog", "gpio"): ("gpiozero",),
    ("lock", "gpio"): ("gpiozero",),
    ("meter", "modbus"): ("pymodbus",),
    ("rfid", "rdm6300"): ("serial",),
    ("rfid", "pn532"): ("serial",),
}


def missing_package(module: str) -> str | None:
    """What to install when ``module`` (a key of PACKAGES) cannot be found; None when it can."""
    try:
        if importlib.util.find_spec(module) is not None:
            return None
    except (ImportError, ValueError):
        pass
    requirement = PACKAGES[module]
    name = re.split(r"[<>=!~\[;, ]", requirement, maxsplit=1)[0]
    return f"needs the Python package {name}: pip install '{requirement}'"


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Key:
    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    check: Callable[[Any], str | None] | None = None


def _id_token(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9._\-*=:+|@]{1,48}", value):
        return "must be 1 to 48 characters from A-Z a-z 0-9 . _ - * = : + | @"
    return None


def _tokens(values: list[Any]) -> str | None:
    for v in values:
        if not isinstance(v, str) or not 1 <= len(v) <= 36 or "\x00" in v:
            return f"every entry must be a string of 1 to 36 characters (got {v!r})"
    return None


def _module_levels(value: dict[str, Any]) -> str | None:
    levels = ("debug", "info", "warning", "error", "critical")
    for name, level in value.items():
        if level not in levels:
            return f"{name}: must be one of {', '.join(levels)} (got {level!r})"
    return None


def _url(value: str) -> str | None:
    example = "must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:9000/ocpp"
    if not re.match(r"wss?://[^/\s]+", value):
        return example
    try:
        urlsplit(value).port  # noqa: B018 - raises on a port out of range
        urlsplit(value).hostname  # noqa: B018
    except ValueError as exc:
        return f"{example} ({exc})"
    return None


NUMBER = (int, float)
GPIO_PIN = Key(int, REQUIRED, min=0, max=27)
OPTIONAL_PIN = Key(int, -1, min=-1, max=27)
FEEDBACK_TIMEOUT = Key(NUMBER, 0.5, min=0.05, max=5.0)
MIN_CLOSE_INTERVAL = Key(NUMBER, 0.0, min=0.0, max=60.0)

# Keys of each driver, by device and driver name. Every device table has `driver`.
DRIVERS: dict[str, dict[str, dict[str, Key]]] = {
    "pilot": {
        "sim": {},
        "pi": {
            "pwm": Key(str, "sysfs", choices=("sysfs", "gpiozero")),
            "pwm_chip": Key(int, 0, min=0, max=15),
            "pwm_channel": Key(int, 0, min=0, max=3),
            "pwm_pin": Key(int, 18, min=0, max=27),
            "pwm_invert": Key(bool, False),
            "pwm_sysfs": Key(str, "/sys/class/pwm", min=1),
            "adc": Key(str, "ads1115", choices=("ads1115",)),
            "i2c_bus": Key(int, 1, min=0, max=31),
            "adc_address": Key(int, 0x48, min=0x48, max=0x4B),
            "adc_mode": Key(str, "peak", choices=("peak", "window")),
            "adc_channel": Key(int, 0, min=0, max=3),
            "adc_channel_low": Key(int, 1, min=0, max=3),
            "adc_window": Key(int, 8, min=2, max=32),
            "adc_scale": Key(NUMBER, 7.273, min=0.1, max=100.0),
            "adc_offset_v": Key(NUMBER, -12.0, min=-30.0, max=30.0),
        },
    },
    "contactor": {
        "sim": {"feedback_timeout_s": FEEDBACK_TIMEOUT, "min_close_interval_s": MIN_CLOSE_INTERVAL},
        "gpio": {
            "pin": GPIO_PIN,
            "feedback_pin": OPTIONAL_PIN,
            "feedback": Key(str, "no", choices=("no", "nc")),
            "feedback_timeout_s": FEEDBACK_TIMEOUT,
            "min_close_interval_s": Key(NUMBER, 1.0, min=0.0, max=60.0),
        },
    },
    "meter": {
        "sim": {},
        "modbus": {
            "model": Key(str, REQUIRED, choices=("sdm630", "sdm120", "sdm72d", "abb_b23", "em340")),
            "port": Key(str, ""),
            "baudrate": Key(int, 9600, choices=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)),
            "parity": Key(str, "N", choices=("N", "E", "O")),
            "stopbits": Key(int, 1, choices=(1, 2)),
            "host": Key(str, ""),
            "tcp_port": Key(int, 502, min=1, max=65535),
            "unit_id": Key(int, 1, min=1, max=247),
            "timeout_s": Key(NUMBER, 1.0, min=0.05, max=10.0),
        },
    },
    "rcd": {
        "none": {},
        "sim": {},
        "gpio": {"pin": GPIO_PIN, "test_pin": OPTIONAL_PIN, "active_high": Key(bool, True)},
    },
    # A line the board's hardware watchdog watches: toggled every control tick while the
    # loop runs, so a hung controller drops the contactor in hardware.
    "watchdog": {"none": {}, "gpio": {"pin": GPIO_PIN}},
    # Connector lock with its position switch: closing needs it engaged.
    "lock": {
        "none": {},
        "sim": {},
        "gpio": {"pin": GPIO_PIN, "feedback_pin": GPIO_PIN, "feedback": Key(str, "no", choices=("no", "nc"))},
    },
    "rfid": {
        "sim": {},
        "rdm6300": {"port": Key(str, "/dev/ttyAMA0"), "baudrate": Key(int, 9600, min=1200, max=921600)},
        "pn532": {"port": Key(str, "/dev/ttyAMA0"), "baudrate": Key(int, 115200, min=1200, max=921600)},
    },
}
DEVICE = object()  # marks a device table in the schema

SCHEMA: dict[str, Any] = {
    "station": {
        "id": Key(str, REQUIRED, check=_id_token),
        "vendor": Key(str, "Generic", min=1, max=20),
        "model": Key(str, "PiCharger", min=1, max=20),
        "serial": Key(str, "", max=25),
    },
    "auth": {
        "mode": Key(str, "", choices=("ocpp", "free", "list")),
        "allow": Key(list, [], check=_tokens),
        "free_id": Key(str, "FREE", min=1, max=20),
    },
    "ocpp": {
        "version": Key(str, "1.6", choices=("1.6", "2.0.1", "auto")),
        "url": Key(str, REQUIRED, check=_url),
        "security_profile": Key(int, 0, choices=(0, 1, 2, 3)),
        "password": Key(str, ""),
        "ca_file": Key(str, ""),
        "cert_file": Key(str, ""),
        "key_file": Key(str, ""),
    },
    "storage": {"dir": Key(str, REQUIRED, min=1)},
    "rfid": DEVICE,
    "evse": [
        {
            "id": Key(int, REQUIRED, min=1),
            "max_current_a": Key(NUMBER, REQUIRED, min=6, max=80),
            "phases": Key(int, 3, choices=(1, 3)),
            "ventilation": Key(bool, False),
            "pilot": DEVICE,
            "contactor": DEVICE,
            "meter": DEVICE,
            "rcd": DEVICE,
            "watchdog": DEVICE,
            "lock": DEVICE,
        }
    ],
    "firmware": {"signing_ca_file": Key(str, ""), "install_command": Key(str, "")},
    "system": {"reboot_command": Key(str, "")},
    "sim": {"socket": Key(str, REQUIRED, min=1)},
    "control": {"sample_hz": Key(int, 50, min=50, max=1000)},
    "logging": {
        "level": Key(str, "info", choices=("debug", "info", "warning", "error", "critical")),
        "modules": Key(dict, {}, check=_module_levels),
        "frame_log_kib": Key(int, 1024, min=16, max=1_048_576),
        "frame_log_files": Key(int, 5, min=1, max=100),
    },
}
OPTIONAL_TABLES = {"auth", "ocpp", "rfid", "firmware", "system", "sim", "control", "logging"}
REQUIRED_DEVICES = {"pilot", "contactor", "meter"}


@dataclass(frozen=True)
class Device:
    driver: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvseConfig:
    id: int
    max_current_a: float
    phases: int
    ventilation: bool
    pilot: Device
    contactor: Device
    meter: Device
    rcd: Device
    watchdog: Device
    lock: Device


@dataclass(frozen=True)
class Config:
    path: Path
    station: dict[str, Any]
    auth: dict[str, Any]
    ocpp: dict[str, Any] | None
    storage_dir: Path
    rfid: Device | None
    evses: tuple[EvseConfig, ...]
    firmware: dict[str, Any]
    system: dict[str, Any]
    sim_socket: Path | None
    sample_hz: int
    logging: dict[str, Any] = field(default_factory=dict)

    def file(self, value: str) -> Path:
        """A file named by the config: relative names are relative to the config file."""
        return _resolve(self.path.parent, value)

    def uses_sim(self) -> bool:
        devices = [d for e in self.evses for d in (e.pilot, e.contactor, e.meter, e.rcd, e.lock)]
        return any(d.driver == "sim" for d in devices + ([self.rfid] if self.rfid else []))


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", bool: "true or false", list: "a list", dict: "a table"}
    if isinstance(kind, tuple):
        return "a number"
    return names.get(kind, kind.__name__)


def _bounds(key: Key) -> str:
    """The allowed range of a Key in words: "from 6 to 80", "at least 1", "at most 25"."""
    if key.min is not None and key.max is not None:
        return f"from {key.min} to {key.max}"
    return f"at least {key.min}" if key.min is not None else f"at most {key.max}"


def _describe(value: Any) -> str:
    kind = {str: "string", bool: "boolean", int: "integer", float: "number", list: "list", dict: "table"}.get(
        type(value), type(value).__name__
    )
    return f"{kind} {value!r}" if not isinstance(value, (dict, list)) else kind


class _Validator:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def unknown(self, prefix: str, keys: set[str], known: set[str]) -> None:
        for key in sorted(keys - known):
            hint = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            tip = f'; did you mean "{hint[0]}"?' if hint else f"; valid keys: {', '.join(sorted(known))}"
            self.error(f"{prefix}{key}", f"unknown key{tip}")

    def value(self, where: str, key: Key, value: Any) -> Any:
        ok = isinstance(value, key.kind) and not (key.kind in (int, NUMBER) and isinstance(value, bool))
        if not ok:
            self.error(where, f"must be {_type_name(key.kind)} (got {_describe(value)})")
            return None
        if key.choices is not None and value not in key.choices:
            self.error(where, f"must be one of {', '.join(repr(c) for c in key.choices)} (got {value!r})")
            return None
        if isinstance(value, str | list) and key.kind in (str, list):
            size = len(value)
            if (key.min is not None and size < key.min) or (key.max is not None and size > key.max):
                self.error(where, f"must have {_bounds(key)} characters (got {size})")
                return None
        elif isinstance(value, int | float) and (
            # written as "not >=" / "not <=" so that nan (valid TOML) is out of every range
            (key.min is not None and not value >= key.min) or (key.max is not None and not value <= key.max)
        ):
            self.error(where, f"must be {_bounds(key)} (got {value})")
            return None
        if isinstance(value, str) and "\x00" in value:
            self.error(where, "must not contain a NUL character")
            return None
        if key.check and (message := key.check(value)):
            self.error(where, message)
            return None
        return value

    def table(self, prefix: str, schema: dict[str, Any], data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.error(prefix.rstrip(".: ") or "file", f"must be a table (got {_describe(data)})")
            return {}
        self.unknown(prefix, set(data), set(schema))
        out: dict[str, Any] = {}
        for name, key in schema.items():
            if not isinstance(key, Key):
                continue
            if name not in data:
                if key.default is REQUIRED:
                    self.error(f"{prefix}{name}", f"missing; this key is required ({_type_name(key.kind)})")
                    out[name] = None  # like an invalid value: callers skip entries holding None
                else:
                    out[name] = key.default
                continue
            out[name] = self.value(f"{prefix}{name}", key, data[name])
        return out

    def device(self, prefix: str, kind: str, data: Any, default: str | None = None) -> Device | None:
        drivers = DRIVERS[kind]
        if data is None:
            data = {"driver": default} if default else None
        if data is None:
            self.error(f"{prefix}{kind}", f'missing; e.g. {kind} = {{ driver = "sim" }}')
            return None
        if not isinstance(data, dict):
            self.error(
                f"{prefix}{kind}", f'must be a table like {{ driver = "sim" }} (got {_describe(data)})'
            )
            return None
        driver = data.get("driver")
        if not isinstance(driver, str) or driver not in drivers:
            self.error(
                f"{prefix}{kind}.driver",
                f"must be one of {', '.join(repr(d) for d in drivers)} (got {driver!r})",
            )
            return None
        schema: dict[str, Any] = {"driver": Key(str), **drivers[driver]}
        options = self.table(f"{prefix}{kind}.", schema, data)
        options.pop("driver", None)
        needs = [(f"{kind}.driver", driver, m) for m in DRIVER_PACKAGES.get((kind, driver), ())]
        if kind == "pilot" and options.get("pwm") == "gpiozero":
            needs.append(("pilot.pwm", "gpiozero", "gpiozero"))
        for where, value, module in needs:
            if message := missing_package(module):
                self.error(f"{prefix}{where}", f'"{value}" {message}')
        return Device(driver, options)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _evse_prefix(raw: Any, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), int) and not isinstance(raw["id"], bool):
        return f"evse {raw['id']}: "
    return f"evse #{index + 1} (no valid id): "


def parse(data: dict[str, Any], path: Path) -> Config:
    """Validate parsed TOML; raises ConfigError listing every problem."""
    v = _Validator()
    base = path.parent
    v.unknown("", set(data), set(SCHEMA))
    for required in ("station", "storage", "evse"):
        if required not in data:
            v.error(
                required, f"missing; the [{'[evse]' if required == 'evse' else required}] table is required"
            )

    tables = {
        name: v.table(f"{name}.", SCHEMA[name], data.get(name, {}))
        for name in ("station", "storage", "auth", "firmware", "system", "control", "logging")
        if name in data or name in OPTIONAL_TABLES
    }
    ocpp = v.table("ocpp.", SCHEMA["ocpp"], data["ocpp"]) if "ocpp" in data else None
    sim = v.table("sim.", SCHEMA["sim"], data["sim"]) if "sim" in data else None
    rfid = v.device("", "rfid", data["rfid"]) if "rfid" in data else None

    evses: list[EvseConfig] = []
    raw_evses = data.get("evse", [])
    if not isinstance(raw_evses, list) or not raw_evses:
        if "evse" in data:
            v.error("evse", "must be one or more [[evse]] tables")
        raw_evses = []
    seen: set[int] = set()
    for index, raw in enumerate(raw_evses):
        prefix = _evse_prefix(raw, index)
        values = v.table(prefix, SCHEMA["evse"][0], raw)
        if not isinstance(raw, dict):
            continue
        pilot = v.device(prefix, "pilot", raw.get("pilot"))
        devices = {
            "pilot": pilot,
            "contactor": v.device(prefix, "contactor", raw.get("contactor")),
            "meter": v.device(prefix, "meter", raw.get("meter")),
            "rcd": v.device(
                prefix, "rcd", raw.get("rcd"), default="sim" if pilot and pilot.driver == "sim" else "none"
            ),
            "watchdog": v.device(prefix, "watchdog", raw.get("watchdog"), default="none"),
            "lock": v.device(prefix, "lock", raw.get("lock"), default="none"),
        }
        evse_id = values.get("id")
        if isinstance(evse_id, int):
            if evse_id in seen:
                v.error(f"{prefix}id", f"duplicate evse id {evse_id}; ids must be 1..n, each once")
            elif evse_id != index + 1:
                v.error(f"{prefix}id", f"must be {index + 1}: evse ids are numbered 1..n in file order")
            seen.add(evse_id)
        meter = devices["meter"]
        if (
            meter
            and meter.driver == "modbus"
            and bool(meter.options.get("port")) == bool(meter.options.get("host"))
        ):
            v.error(f"{prefix}meter", "set exactly one of port (RTU) or host (TCP)")
        if None in values.values() or None in devices.values():
            continue
        evses.append(
            EvseConfig(
                id=values["id"],
                max_current_a=float(values["max_current_a"]),
                phases=values["phases"],
                ventilation=values["ventilation"],
                **devices,  # type: ignore[arg-type]
            )
        )

    config = Config(
        path=path,
        station=tables.get("station", {}),
        auth=tables.get("auth", {}),
        ocpp=ocpp,
        storage_dir=_resolve(base, tables.get("storage", {}).get("dir") or "."),
        rfid=rfid,
        evses=tuple(evses),
        firmware=tables.get("firmware", {}),
        system=tables.get("system", {}),
        sim_socket=_resolve(base, sim["socket"]) if sim and sim.get("socket") else None,
        sample_hz=tables.get("control", {}).get("sample_hz") or 50,
        logging=tables.get("logging", {}),
    )
    _check_rules(v, config, data)
    if v.problems:
        raise ConfigError(v.problems)
    return config


def _check_rules(v: _Validator, config: Config, data: dict[str, Any]) -> None:
    """Rules that span keys (CONTRACTS section 2)."""
    base = config.path.parent
    auth = config.auth
    if not auth.get("mode"):
        auth["mode"] = "ocpp" if config.ocpp is not None else "free"
    elif auth["mode"] == "ocpp" and config.ocpp is None:
        v.error("auth.mode", '"ocpp" needs an [ocpp] table; standalone use "free" or "list"')

    ocpp = config.ocpp
    if ocpp and ocpp.get("url") and ocpp.get("security_profile") is not None:
        url, profile = ocpp["url"].rstrip("/"), ocpp["security_profile"]
        ocpp["url"] = url
        if url.startswith("ws://") and profile in (2, 3):
            v.error("ocpp.url", f"security profile {profile} needs TLS: use a wss:// URL")
        if url.startswith("wss://") and profile in (0, 1):
            v.error("ocpp.security_profile", "a wss:// URL needs security profile 2 or 3")
        password = ocpp.get("password") or ""
        if profile in (1, 2) and not 16 <= len(password) <= 40:
            v.error(
                "ocpp.password",
                f"security profile {profile} needs a password of 16 to 40 characters (got {len(password)})",
            )
        needed = {2: ("ca_file",), 3: ("ca_file", "cert_file", "key_file")}.get(profile, ())
        for name in ("ca_file", "cert_file", "key_file"):
            value = ocpp.get(name) or ""
            if name in needed[1:] and not value:
                v.error(f"ocpp.{name}", f"security profile {profile} needs a client certificate: set {name}")
            elif value and name in needed:
                _must_exist(v, f"ocpp.{name}", _resolve(base, value))
    if ocpp is not None:
        firmware = config.firmware
        for name in ("signing_ca_file", "install_command"):
            if firmware.get(name):
                target = _resolve(base, firmware[name])
                if (
                    _must_exist(v, f"firmware.{name}", target)
                    and name == "install_command"
                    and not os.access(target, os.X_OK)
                ):
                    v.error(f"firmware.{name}", f"{target} is not executable: chmod +x it")

    for evse in config.evses:
        # An ADS1115 sample takes about 6 ms (two peak channels) or 12 ms (a window of 8).
        if evse.pilot.driver == "pi":
            mode = evse.pilot.options.get("adc_mode", "peak")
            limit = 150 if mode == "peak" else 75
            if config.sample_hz > limit:
                v.error(
                    "control.sample_hz",
                    f"at most {limit} with evse {evse.id}'s ADS1115 pilot "
                    f"(adc_mode {mode!r}): one sample takes longer than a tick",
                )

    if config.uses_sim() or _names_sim_driver(data):
        if config.sim_socket is None:
            if "sim" not in data:
                v.error("sim.socket", 'missing; a "sim" driver needs [sim] socket = "/run/evse/sim.sock"')
        elif len(os.fsencode(config.sim_socket)) > SOCKET_PATH_MAX:
            v.error(
                "sim.socket",
                f"path {config.sim_socket} is longer than {SOCKET_PATH_MAX} bytes; "
                "Unix sockets cannot bind it: choose a shorter path",
            )


def _names_sim_driver(data: dict[str, Any]) -> bool:
    """Whether the raw file asks for a "sim" driver anywhere, even in an EVSE that is otherwise invalid
    (``Config.evses`` holds only the valid ones, and every problem must be reported at once)."""
    raw_evses = data.get("evse")
    tables = [e for e in raw_evses if isinstance(e, dict)] if isinstance(raw_evses, list) else []
    devices = [e.get(kind) for e in tables for kind in DRIVERS if kind != "rfid"] + [data.get("rfid")]
    return any(isinstance(d, dict) and d.get("driver") == "sim" for d in devices)


def _must_exist(v: _Validator, where: str, path: Path) -> bool:
    if not path.is_file():
        v.error(where, f"file {path} does not exist")
        return False
    return True


def load(path: Path) -> Config:
    """Read and validate a config file; every failure is a ConfigError naming the path."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: no such file; pass --config PATH or create it (examples in config/)"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return parse(data, path.resolve())
