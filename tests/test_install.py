"""`make install` / `make uninstall` into a throw-away root, as on Raspberry Pi OS."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("systemd-analyze", "systemd-sysusers", "systemctl", "pkg-config")

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS)
    or subprocess.run(["pkg-config", "--exists", "libsystemd"]).returncode != 0
    or os.getuid() != 0,
    reason="needs root, systemd tools and libsystemd-dev (CI installs them)",
)


def make(target: str, root: Path) -> None:
    result = subprocess.run(
        ["make", target, f"DESTDIR={root}", f"PYTHON={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def group_id(root: Path, name: str) -> int:
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"group {name} missing")


def test_install_puts_every_file_in_place_and_uninstall_removes_them(tmp_path: Path) -> None:
    root = tmp_path / "root"
    checked = subprocess.run(
        [ROOT / "systemd/check-install", root, sys.executable], capture_output=True, text=True, timeout=900
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "systemd-analyze verify: clean" in checked.stdout

    evse = root / "opt/evse/bin/evse"
    assert mode(evse) == 0o755 and evse.read_text().startswith("#!/opt/evse/bin/python")
    unit = root / "etc/systemd/system/evse.service"
    assert mode(unit) == 0o644 and unit.read_text() == (ROOT / "systemd/evse.service").read_text()
    assert mode(root / "usr/lib/sysusers.d/evse.conf") == 0o644
    assert mode(root / "etc/udev/rules.d/90-evse-pwm.rules") == 0o644
    wants = root / "etc/systemd/system/multi-user.target.wants/evse.service"
    assert wants.is_symlink() and str(wants.readlink()) == "/etc/systemd/system/evse.service"

    evse_gid = group_id(root, "evse")
    config_dir, config = root / "etc/evse", root / "etc/evse/evse.toml"
    assert mode(config_dir) == 0o750 and config_dir.stat().st_gid == evse_gid
    assert mode(config) == 0o640 and config.stat().st_gid == evse_gid  # may hold the OCPP password
    assert config.read_text() == (ROOT / "config/evse.pi.toml").read_text()
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:  # the README's links resolve
        installed = root / "opt/evse" / page.relative_to(ROOT)
        assert mode(installed) == 0o644 and installed.read_text() == page.read_text(), installed

    (user,) = [line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("evse:")]
    assert user.endswith(":/var/lib/evse:/usr/sbin/nologin")
    for device_group in ("gpio", "i2c", "dialout"):
        line = next(
            g for g in (root / "etc/group").read_text().splitlines() if g.startswith(device_group + ":")
        )
        assert line.split(":")[3].split(",") == ["evse"]

    python = root / "opt/evse/bin/python"
    imports = "import controller, drivers, gpiozero, serial, smbus2, pymodbus, systemd.journal"
    assert subprocess.run([python, "-c", imports], timeout=60).returncode == 0
    check = subprocess.run(
        [python, "-m", "controller", "config", "check", config], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr

    make("uninstall", root)
    for gone in (
        evse.parent.parent,
        unit,
        wants,
        root / "etc/udev/rules.d/90-evse-pwm.rules",
        root / "usr/lib/sysusers.d/evse.conf",
    ):
        assert not gone.exists() and not gone.is_symlink(), gone
    assert config.exists()  # the technician's configuration stays


def test_the_unit_rates_2_0_or_better_in_systemd_analyze_security() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "systemd/evse.service"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for evse.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0
