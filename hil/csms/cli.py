"""The command line: ``python -m hil.csms`` runs a ``DevCsms`` in the foreground, printing the
timeline, until Ctrl-C or SIGTERM (``hil.csms.stopping``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from collections.abc import Iterable

from hil.csms import stopping
from hil.csms.server import DevCsms
from hil.csms.versions import SUBPROTOCOLS

# What ``--version auto`` stands for: the newest first.
_AUTO = ("2.0.1", "1.6")


def _cli_versions(chosen: Iterable[str]) -> tuple[str, ...]:
    """The ``--version`` values in order, ``auto`` expanded, each version once."""
    expanded = [v for choice in chosen for v in (_AUTO if choice == "auto" else (choice,))]
    return tuple(dict.fromkeys(expanded))


def _cli_ssl_context(cert: str, key: str | None, ca: str | None) -> ssl.SSLContext:
    """The server context of ``--tls-*``: TLS 1.2 or newer; client certificates required with a CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=ca)
    return context


def _listening_urls(csms: DevCsms) -> list[str]:
    return [csms.url, csms.tls_url] if csms.plain_too else [csms.url]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hil.csms", description="Development OCPP CSMS.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=9000, help="port (default %(default)s; 0 = any free)")
    parser.add_argument(
        "--boot-status",
        default="Accepted",
        choices=["Accepted", "Pending", "Rejected"],
        help="BootNotification status",
    )
    parser.add_argument(
        "--heartbeat", type=int, default=300, help="heartbeat interval in s (default %(default)s)"
    )
    parser.add_argument(
        "--version",
        action="append",
        dest="versions",
        choices=[*SUBPROTOCOLS, "auto"],
        help="OCPP version to accept; repeat for several, preferred first; auto = 2.0.1, then 1.6 "
        "(default 1.6)",
    )
    parser.add_argument("--tls-cert", help="PEM certificate chain (leaf first): serve wss:// (profile 2)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert (default: in the --tls-cert file)")
    parser.add_argument(
        "--tls-ca", help="PEM CA certificates: require client certificates signed by them (profile 3)"
    )
    parser.add_argument(
        "--plain-too", action="store_true", help="with --tls-cert: take ws:// on the same port as well"
    )
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    """Run the CSMS in the foreground, printing the timeline, until Ctrl-C or SIGTERM."""
    with stopping.handled() as shutdown, contextlib.suppress(KeyboardInterrupt):
        _main(argv, shutdown)
    return 0


def _main(argv: Iterable[str] | None, shutdown: stopping.Shutdown) -> None:
    parser = _parser()
    args = parser.parse_args(None if argv is None else list(argv))
    versions = _cli_versions(args.versions or ["1.6"])
    if args.tls_cert is None and (args.tls_key or args.tls_ca or args.plain_too):
        parser.error("--tls-key, --tls-ca and --plain-too need --tls-cert")
    context = _cli_ssl_context(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None

    async def run() -> None:
        shutdown.attach()
        if shutdown.signalled is not None:
            return
        csms = DevCsms(
            host=args.host,
            port=args.port,
            versions=versions,
            boot_status=args.boot_status,
            heartbeat_interval=args.heartbeat,
            ssl_context=context,
            plain_too=args.plain_too,
            close_timeout=stopping.CLOSE_TIMEOUT_S,
        )
        await csms.start()
        names = ", ".join(versions)
        urls = " or ".join(f"{url}/<station id>" for url in _listening_urls(csms))
        print(f"dev CSMS (OCPP {names}) listening: connect stations to {urls}", flush=True)
        try:
            await shutdown.wait()
        finally:
            await _stop(csms)

    asyncio.run(run())


async def _stop(csms: DevCsms) -> None:
    """Stop the CSMS, giving up on stations that do not finish closing in time."""
    try:
        async with asyncio.timeout(stopping.STOP_TIMEOUT_S):
            await csms.stop()
    except TimeoutError:
        print(f"dev CSMS: not stopped within {stopping.STOP_TIMEOUT_S:g} s: exiting", file=sys.stderr)
