"""The ``evse`` command line (CONTRACTS section 1)."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from controller import __version__
from controller.config import DEFAULT_PATH, EX_CONFIG, Config, ConfigError, load
from controller.io import logs

log = logging.getLogger("evse")
EX_UNAVAILABLE = 69
REBOOT_COMMAND_TIMEOUT_S = 60.0  # a reboot command still running then has hung (a prompt, a stuck job)


def _version() -> str:
    # Not importlib.metadata: it costs the daemon 2.4 MB of memory for one string.
    return __version__


def _print_problems(path: Path, error: ConfigError) -> None:
    print(f"{path}: {len(error.problems)} problem(s):", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)


def _load(path: Path) -> Config | None:
    try:
        return load(path)
    except ConfigError as exc:
        _print_problems(path, exc)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EX_CONFIG
    # First, while this process is one thread with nothing heavy imported: the safety
    # process owns the pilots and contactors from here on (controller.safety.spawn).
    from controller.safety import realtime
    from controller.safety.spawn import spawn

    safety = spawn(config)
    realtime.renounce_realtime()  # the unit's LimitRTPRIO= is for the safety process alone
    # From here the rig answers (the safety process serves it): a SIGTERM or SIGINT that
    # comes before the event loop takes them over must still stop the daemon cleanly.
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: early.append(signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the config is being read: nothing to reload yet
    logs.setup(config.logging.get("level", "info"), config.logging.get("modules"))
    # A watchdog kill (SIGABRT) then shows every thread's stack in the journal.
    faulthandler.enable()
    import asyncio

    from controller.daemon import Daemon, StartupError

    try:
        daemon = Daemon(config, version=_version(), safety=safety, stop_requested=lambda: bool(early))
        code = asyncio.run(daemon.run())
        safety.end()  # before a re-execution: the next start forks its own
        if daemon.restart is not None:
            _restart(daemon.restart, config, daemon.restart_retries)
        return code
    except StartupError as exc:
        # Missing hardware or storage, not a bad file: exit 1 so systemd retries.
        log.error("cannot start: %s", exc)
        return 1
    finally:
        safety.end()


def _restart(how: str, config: Config, retries: int = 0) -> None:
    """After a reset or a firmware install: reboot the machine, or re-execute in place.

    A reboot command that fails is run ``retries`` more times (ResetRetries); if it never
    succeeds the daemon re-executes in place, so the station at least restarts its software.
    """
    command = config.system.get("reboot_command") or ""
    if how == "reboot" and command:
        if run_reboot_command(command, retries):
            logging.shutdown()
            return
        log.error("the reboot command failed %d times; restarting the daemon in place", 1 + max(0, retries))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "controller", *sys.argv[1:]])


def run_reboot_command(command: str, retries: int, timeout_s: float = REBOOT_COMMAND_TIMEOUT_S) -> bool:
    """Run ``command`` until it succeeds, ``retries`` more times at most; whether it did.

    A run that takes longer than ``timeout_s`` has failed: it is killed (with what it started)."""
    for attempt in range(1 + max(0, retries)):
        log.warning("running the reboot command (attempt %d): %s", attempt + 1, command)
        try:
            proc = subprocess.Popen(shlex.split(command), stdin=subprocess.DEVNULL, start_new_session=True)
        except (OSError, ValueError) as exc:
            log.error("reboot command failed: %s", exc)
            continue
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.error("reboot command still running after %.0f s: killed, counted as a failure", timeout_s)
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            continue
        if code == 0:
            return True
        log.error("reboot command exited %d", code)
    return False


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _load(args.path)
    if config is None:
        return EX_CONFIG
    modes = config.auth["mode"] + (f", OCPP {config.ocpp['version']}" if config.ocpp else ", standalone")
    print(f"{args.path}: valid: station {config.station['id']}, {len(config.evses)} EVSE(s), auth {modes}")
    return 0


def _socket_path(args: argparse.Namespace) -> Path | None:
    if getattr(args, "socket", None):
        return Path(args.socket)
    config = _load(args.config)
    if config is None:
        return None
    if config.sim_socket is None:
        print(f"{args.config}: no [sim] socket configured; pass --socket PATH", file=sys.stderr)
        return None
    return config.sim_socket


def request(path: Path, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one rig request and return the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


def _parse_fields(pairs: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            fields[key] = json.loads(raw)
        except ValueError:
            fields[key] = raw
    return fields


def _send(path: Path, message: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return request(path, message)
    except (OSError, ValueError) as exc:
        print(f"cannot reach the daemon at {path}: {exc}; is `evse run` running?", file=sys.stderr)
        return None


def cmd_sim(args: argparse.Namespace) -> int:
    path = _socket_path(args)
    if path is None:
        return EX_CONFIG
    try:
        message = {"cmd": args.command, **_parse_fields(args.fields)}
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    reply = _send(path, message)
    if reply is None:
        return EX_UNAVAILABLE
    print(json.dumps(reply))
    return 0 if reply.get("ok") is True else 1


def cmd_status(args: argparse.Namespace) -> int:
    path = _socket_path(args)
    if path is None:
        return EX_CONFIG
    reply = _send(path, {"cmd": "status"})
    if reply is None:
        return EX_UNAVAILABLE
    reply.pop("ok", None)
    if args.json:
        print(json.dumps(reply))
        return 0
    ocpp = reply.get("ocpp", {})
    link = f"connected, OCPP {ocpp.get('version')}" if ocpp.get("connected") else "not connected"
    print(f"OCPP: {link}, {ocpp.get('queued', 0)} message(s) queued")
    print(
        f"{'EVSE':<5}{'pilot':<7}{'offer':>9}  {'contactor':<10}{'power':>10}{'energy':>12}  "
        f"{'status':<14}transaction"
    )
    for e in reply.get("evses", []):
        offer = f"{e['offered_a']:.1f} A" if e["pwm"] else "none"
        status = e["connector_status"] + (
            f" ({e['error_code']})" if e.get("error_code", "NoError") != "NoError" else ""
        )
        contactor = "closed" if e["contactor_closed"] else "open"
        print(
            f"{e['evse']:<5}{e['cp_state']:<7}{offer:>9}  {contactor:<10}{e['power_w']:>8.0f} W"
            f"{e['energy_wh'] / 1000:>9.3f} kWh  {status:<14}{e['transaction_id'] or '-'}"
        )
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EX_CONFIG
    from controller import doctor

    checks = doctor.run(config, actuate=args.actuate, card_seconds=args.card_seconds)
    print(doctor.render(checks))
    return 1 if any(c.ok is False for c in checks) else 0


def cmd_firmware_sign(args: argparse.Namespace) -> int:
    from controller.security import certs

    try:
        key = certs.load_key(args.key.read_bytes())
        signature = certs.sign_firmware(args.image, key, args.scheme)
        if args.output:
            args.output.write_text(signature + "\n", encoding="ascii")
    except OSError as exc:
        print(f"evse firmware sign: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (certs.CertError, ValueError) as exc:
        print(f"evse firmware sign: {exc}", file=sys.stderr)
        return 1
    if not args.output:
        print(signature)
    return 0


def cmd_firmware_verify(args: argparse.Namespace) -> int:
    """Check an image as the station would: signing certificate, then the signature."""
    from datetime import UTC, datetime

    from controller.security import certs

    try:
        roots = certs.load_certs(args.ca.read_bytes())
        pem = args.cert.read_text(encoding="ascii")
        cert = certs.check_signing_certificate(pem, roots, datetime.now(UTC))
        signature = args.signature.read_text(encoding="ascii").strip()
        scheme = certs.verify_firmware(cert, signature, certs.file_digest(args.image))
    except OSError as exc:
        print(f"evse firmware verify: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (certs.CertError, UnicodeDecodeError) as exc:
        print(f"evse firmware verify: REFUSED: {exc}", file=sys.stderr)
        return 1
    print(f"{args.image}: signature valid ({scheme}), signed by {certs.describe(cert)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evse", description="EV charge point controller")
    p.add_argument("--version", action="version", version=f"evse {_version()}")
    sub = p.add_subparsers(dest="action", required=True)

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config", type=Path, default=DEFAULT_PATH)
    run.set_defaults(func=cmd_run)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_action", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("path", type=Path)
    check.set_defaults(func=cmd_config_check)

    sim = sub.add_parser("sim", help="send one command to a running daemon's simulation rig")
    where = sim.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, default=DEFAULT_PATH)
    where.add_argument("--socket", type=Path)
    sim.add_argument("command", help="plug, charge, suspend, unplug, cp, swipe, fault, status")
    sim.add_argument("fields", nargs="*", metavar="KEY=VALUE")
    sim.set_defaults(func=cmd_sim)

    status = sub.add_parser("status", help="show the live state of a running daemon")
    status.add_argument("--config", type=Path, default=DEFAULT_PATH)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    doctor = sub.add_parser("doctor", help="check every configured device (run with the daemon stopped)")
    doctor.add_argument("--config", type=Path, default=DEFAULT_PATH)
    doctor.add_argument(
        "--actuate",
        action="store_true",
        help="also switch the contactor (only with no EV) and self-test the RCD",
    )
    doctor.add_argument(
        "--card-seconds", type=float, default=0.0, metavar="N", help="wait up to N seconds for an RFID card"
    )
    doctor.set_defaults(func=cmd_doctor)

    firmware = sub.add_parser("firmware", help="sign and verify firmware images (for manufacturers)")
    firmware_sub = firmware.add_subparsers(dest="firmware_action", required=True)
    sign = firmware_sub.add_parser("sign", help="print the base64 signature of an image")
    sign.add_argument("image", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="signing private key (PEM, RSA or EC)")
    sign.add_argument(
        "--scheme", choices=("RSA-PSS", "RSA-PKCS1v15", "ECDSA"), help="default: RSA-PSS or ECDSA by key"
    )
    sign.add_argument("--output", type=Path, help="write the signature to this file")
    sign.set_defaults(func=cmd_firmware_sign)
    verify = firmware_sub.add_parser("verify", help="check an image, its signature and signing certificate")
    verify.add_argument("image", type=Path)
    verify.add_argument("--signature", type=Path, required=True, help="file with the base64 signature")
    verify.add_argument("--cert", type=Path, required=True, help="signing certificate (PEM)")
    verify.add_argument("--ca", type=Path, required=True, help="manufacturer roots (signing_ca_file)")
    verify.set_defaults(func=cmd_firmware_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
