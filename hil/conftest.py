"""The scenario suite's rig, station, CSMS and network, chosen on the command line.

    python -m pytest hil                            simulation (CI): daemon subprocess + SimRig
    python -m pytest hil --rig pi --rig-config hil/pirig.toml --listen 0.0.0.0:8180 --ocpp 1.6
                                                    a bench: the charger connects to this machine
    python -m pytest hil --csms ws://csms.example:9000/ocpp
                                                    an outside CSMS (scenarios that must see
                                                    or steer the CSMS are skipped)

The station always reaches the CSMS through the fault proxy (hil.proxy).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hil.csms import CsmsThread, describe
from hil.proxy import ProxyThread
from hil.rig import Rig
from hil.station import LocalStation
from hil.view import CsmsView

TOKEN = "04A1B2C3D4"  # also a valid RDM6300 id, so a bench can present it


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop scenarios")
    group.addoption("--rig", choices=("sim", "pi"), default="sim", help="sim (default) or pi (a bench)")
    group.addoption("--rig-config", default="hil/pirig.toml", help="the bench's pins (with --rig pi)")
    group.addoption("--csms", default=None, help="URL of an outside CSMS (default: the bundled one)")
    group.addoption("--ocpp", default="1.6,2.0.1", help="OCPP versions to run, comma-separated")
    group.addoption(
        "--listen", default="127.0.0.1:0", help="HOST:PORT of the proxy the charger connects to (a bench)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "version" in metafunc.fixturenames:
        versions = [v.strip() for v in metafunc.config.getoption("--ocpp").split(",") if v.strip()]
        metafunc.parametrize("version", versions)


class Station:
    """The charger under test and what can be done to it besides the EV side."""

    def __init__(self, rig: Rig, local: LocalStation | None, power_cut: object = None) -> None:
        self.rig = rig
        self.local = local
        self._power_cut = power_cut

    def power_loss(self, off_s: float = 1.0) -> None:
        if self.local is not None:
            self.local.power_loss(off_s).close()  # the scenario's rig reconnects by itself
            return
        cut = getattr(self.rig, "power_cut", None)
        if cut is None:
            pytest.skip("this rig cannot cut the charger's power")
        cut(True)
        time.sleep(off_s)
        cut(False)

    def fill_disk(self) -> None:
        if self.local is None:
            pytest.skip("disk full needs the station's storage here (a local station)")
        if not self.local.mounted:
            pytest.skip(f"disk full needs the storage on a tmpfs: {self.local.no_tmpfs_because}")
        self.local.fill_disk()

    def free_disk(self) -> None:
        assert self.local is not None
        self.local.free_disk()


@pytest.fixture
def csms(request: pytest.FixtureRequest, version: str) -> Iterator[CsmsThread | None]:
    if request.config.getoption("--csms"):
        yield None
        return
    with CsmsThread(quiet=True, versions=(version,), heartbeat_interval=60) as server:
        yield server
        print("--- CSMS timeline (shown when the scenario fails)")
        print("\n".join(f"{e.t:10.3f} {describe(e)}" for e in server.timeline))


@pytest.fixture
def view(csms: CsmsThread | None, version: str) -> CsmsView:
    if csms is None:
        pytest.skip("needs the bundled development CSMS (to see and steer the CSMS side)")
    return CsmsView(csms, version)


@pytest.fixture
def proxy(request: pytest.FixtureRequest, csms: CsmsThread | None) -> Iterator[ProxyThread]:
    outside = request.config.getoption("--csms")
    if outside:
        parts = urlsplit(outside)
        target = (parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "wss" else 80))
    else:
        assert csms is not None
        target = ("127.0.0.1", csms.port)
    host, _, port = request.config.getoption("--listen").rpartition(":")
    with ProxyThread(target, host or "127.0.0.1", int(port)) as running:
        yield running


def _station_url(request: pytest.FixtureRequest, proxy: ProxyThread) -> str:
    outside = request.config.getoption("--csms")
    if not outside:
        return proxy.url("/ocpp")
    parts = urlsplit(outside)
    return proxy.url(parts.path.rstrip("/"), parts.scheme)


@pytest.fixture
def station(
    request: pytest.FixtureRequest, tmp_path: Path, proxy: ProxyThread, version: str, csms: CsmsThread | None
) -> Iterator[Station]:
    if request.config.getoption("--rig") == "pi":
        from hil.pirig import PiRig

        bench_rig = PiRig.from_file(Path(request.config.getoption("--rig-config")))
        try:
            if csms is not None:  # the charger reconnects on its own back-off (60 s at most)
                deadline = time.monotonic() + 90
                while not CsmsView(csms, version).connected():
                    assert time.monotonic() < deadline, "the charger did not connect to the proxy in 90 s"
                    time.sleep(0.5)
            yield Station(bench_rig, None)
        finally:
            bench_rig.close()
        return
    local = LocalStation(tmp_path / "station", _station_url(request, proxy), version, disk_mb=64)
    mark = len(csms.timeline) if csms is not None else 0
    try:
        rig = local.start()
        if csms is not None:  # scenarios begin with the station booted and reported
            csms.wait_for("BootNotification", after=mark, timeout=20)
            csms.wait_for("StatusNotification", after=mark, timeout=20)
        yield Station(rig, local)
    finally:
        with contextlib.suppress(Exception):
            local.close()
        if local.log.exists():
            print(
                "--- daemon.log (tail)\n"
                + "\n".join(local.log.read_text(errors="replace").splitlines()[-60:])
            )


@pytest.fixture
def rig(station: Station) -> Rig:
    return station.rig
