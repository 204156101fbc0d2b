"""systemd/install-firmware, the A/B firmware hook, run as a real process against a fake Pi in a temp dir.

The slots are plain files, the bootloader's partition cell a 4-byte file and the reboot a recorder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "systemd/install-firmware"
SLOT_SIZE = 64 * 1024
DEFAULT_AUTOBOOT = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"
COMMITTED_B = "[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=2\n"
PARTITION = {"A": 2, "B": 3}

# Wraps the real dd: after a write (of=...) it corrupts one byte of the slot, or fails.
FAKE_DD = """#!/bin/sh
"$REAL_DD" "$@" || exit $?
for arg; do case $arg in of=*) target=${arg#of=} ;; esac; done
[ -n "${target:-}" ] || exit 0
case $FAKE_DD in
corrupt) printf X | "$REAL_DD" of="$target" bs=1 seek=100 conv=notrunc status=none ;;
fail) exit 1 ;;
esac
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class FakePi:
    root: Path
    shell: str = "sh"

    def __post_init__(self) -> None:
        self.autoboot = self.root / "boot/autoboot/autoboot.txt"
        self.autoboot.parent.mkdir(parents=True)
        self.autoboot.write_text(DEFAULT_AUTOBOOT)
        self.slots = {name: self.root / f"dev/slot-{name}" for name in ("A", "B")}
        self.slots["A"].parent.mkdir()
        for path in self.slots.values():
            path.write_bytes(os.urandom(SLOT_SIZE))
        self.active_file = self.root / "proc/partition"
        self.active_file.parent.mkdir()
        self.boot("A")
        self.state = self.root / "var/lib/evse/ab-state"
        self.state.parent.mkdir(parents=True)
        self.conf = self.root / "etc/evse/ab.conf"
        self.reboot_log = self.root / "reboots"
        self.recorder = self.root / "reboot"
        self.recorder.write_text(f'#!/bin/sh\necho "$1" >> {self.reboot_log}\n')
        self.recorder.chmod(0o755)
        self.image = self.root / "firmware.bin"
        self.image.write_bytes(os.urandom(40_000))  # not a multiple of dd's block size
        self.env = {
            "PATH": os.environ["PATH"],
            "LC_ALL": "C",
            "EVSE_AB_CONF": str(self.conf),
            "EVSE_AB_AUTOBOOT": str(self.autoboot),
            "EVSE_AB_SLOT_A": str(self.slots["A"]),
            "EVSE_AB_SLOT_B": str(self.slots["B"]),
            "EVSE_AB_ACTIVE_FILE": str(self.active_file),
            "EVSE_AB_STATE": str(self.state),
            "EVSE_AB_REBOOT": str(self.recorder),
        }

    def boot(self, slot: str) -> None:
        """What the bootloader leaves in /proc/device-tree/chosen/bootloader/partition."""
        self.active_file.write_bytes(struct.pack(">I", PARTITION[slot]))

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.shell, str(HOOK), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result

    def install(self) -> None:
        self.ok(str(self.image))

    def state_of(self) -> dict[str, str]:
        if not self.state.exists():
            return {}
        return dict(line.split("=", 1) for line in self.state.read_text().splitlines())

    def reboots(self) -> list[str]:
        return self.reboot_log.read_text().split() if self.reboot_log.exists() else []

    def fake_dd(self, mode: str) -> dict[str, str]:
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "dd").write_text(FAKE_DD)
        (bin_dir / "dd").chmod(0o755)
        real = shutil.which("dd")
        assert real is not None
        return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "REAL_DD": real, "FAKE_DD": mode}


@pytest.fixture
def pi(tmp_path: Path) -> FakePi:
    return FakePi(tmp_path)


def holds_image(pi: FakePi, slot: str) -> bool:
    return pi.slots[slot].read_bytes()[: pi.image.stat().st_size] == pi.image.read_bytes()


def test_the_hook_is_an_executable_posix_script() -> None:
    assert os.access(HOOK, os.X_OK)
    assert HOOK.read_text().startswith("#!/bin/sh\n")


def test_install_writes_the_inactive_slot_verifies_and_stages_it(pi: FakePi) -> None:
    active_before = digest(pi.slots["A"])
    result = pi.ok(str(pi.image))
    assert holds_image(pi, "B")
    assert pi.slots["B"].stat().st_size == SLOT_SIZE  # written in place, not truncated
    assert digest(pi.slots["A"]) == active_before
    state = pi.state_of()
    assert state["state"] == "staged" and state["slot"] == "B"
    assert state["sha256"] == digest(pi.image) and state["size"] == "40000"
    assert pi.autoboot.read_text() == DEFAULT_AUTOBOOT  # the default boot is untouched
    assert "slot B" in result.stderr and pi.reboots() == []


def test_install_from_slot_b_writes_slot_a(pi: FakePi) -> None:
    pi.autoboot.write_text(COMMITTED_B)
    pi.boot("B")
    active_before = digest(pi.slots["B"])
    pi.install()
    assert holds_image(pi, "A") and digest(pi.slots["B"]) == active_before
    assert pi.state_of()["slot"] == "A"
    assert pi.autoboot.read_text() == COMMITTED_B


def test_install_adds_the_tryboot_section_and_keeps_the_default(pi: FakePi) -> None:
    pi.autoboot.write_text("[all]\r\nboot_partition=2\r\n")
    pi.install()
    assert pi.autoboot.read_text() == DEFAULT_AUTOBOOT
    assert not pi.autoboot.with_name("autoboot.txt.new").exists()


def test_install_is_idempotent(pi: FakePi) -> None:
    pi.install()
    first = (digest(pi.slots["B"]), pi.autoboot.read_text())
    pi.install()
    assert (digest(pi.slots["B"]), pi.autoboot.read_text()) == first
    assert pi.state_of()["state"] == "staged"


def test_an_image_larger_than_the_slot_is_refused(pi: FakePi) -> None:
    pi.image.write_bytes(os.urandom(SLOT_SIZE + 1))
    slots = {name: digest(path) for name, path in pi.slots.items()}
    result = pi.run(str(pi.image))
    assert result.returncode != 0 and "refusing" in result.stderr
    assert {name: digest(path) for name, path in pi.slots.items()} == slots
    assert pi.state_of() == {} and pi.autoboot.read_text() == DEFAULT_AUTOBOOT


@pytest.mark.parametrize(
    "cell",
    [None, struct.pack(">I", 7), b"\x00\x02", struct.pack(">I", 2) + b"\x00", b"2\n"],
    ids=["missing", "other-partition", "short", "long", "text"],
)
def test_an_unknown_running_slot_refuses_install_and_commit(pi: FakePi, cell: bytes | None) -> None:
    if cell is None:
        pi.active_file.unlink()
    else:
        pi.active_file.write_bytes(cell)
    slots = {name: digest(path) for name, path in pi.slots.items()}
    result = pi.run(str(pi.image))
    assert result.returncode != 0 and "running slot" in result.stderr
    assert {name: digest(path) for name, path in pi.slots.items()} == slots
    assert pi.state_of() == {} and pi.autoboot.read_text() == DEFAULT_AUTOBOOT
    assert pi.run("--commit").returncode != 0


def test_a_missing_image_or_autoboot_is_refused(pi: FakePi) -> None:
    assert pi.run(str(pi.root / "nothing.bin")).returncode != 0
    pi.autoboot.unlink()
    assert pi.run(str(pi.image)).returncode != 0
    assert not holds_image(pi, "B") and pi.state_of() == {}


def test_no_install_while_an_uncommitted_slot_is_being_tried(pi: FakePi) -> None:
    pi.boot("B")  # tryboot into B; A is still the default and must survive
    slots = {name: digest(path) for name, path in pi.slots.items()}
    result = pi.run(str(pi.image))
    assert result.returncode != 0 and "commit or roll back" in result.stderr
    assert {name: digest(path) for name, path in pi.slots.items()} == slots


@pytest.mark.parametrize("mode", ["corrupt", "fail"])
def test_a_bad_write_is_not_staged_and_the_next_boot_is_the_active_slot(pi: FakePi, mode: str) -> None:
    active_before = digest(pi.slots["A"])
    result = pi.run(str(pi.image), **pi.fake_dd(mode))
    assert result.returncode != 0, result.stderr
    assert ("read-back" if mode == "corrupt" else "writing") in result.stderr
    assert pi.state_of()["state"] == "failed"
    assert pi.autoboot.read_text() == DEFAULT_AUTOBOOT
    assert digest(pi.slots["A"]) == active_before
    pi.ok("--reboot")
    assert pi.reboots() == ["normal"]


def test_reboot_without_a_staged_install_is_plain(pi: FakePi) -> None:
    pi.ok("--reboot")
    assert pi.reboots() == ["normal"]


def test_a_staged_install_is_tried_once_then_committed(pi: FakePi) -> None:
    pi.install()
    pi.ok("--reboot")
    assert pi.reboots() == ["tryboot"] and pi.state_of()["state"] == "trying"
    pi.boot("B")  # the [tryboot] section booted partition 3
    result = pi.ok("--commit")
    assert "slot B committed" in result.stderr
    assert pi.autoboot.read_text() == COMMITTED_B
    assert pi.state_of()["state"] == "committed"
    pi.ok("--commit")  # idempotent
    assert pi.autoboot.read_text() == COMMITTED_B
    pi.ok("--reboot")
    assert pi.reboots() == ["tryboot", "normal"]


def test_commit_back_on_the_old_slot_fails_and_the_slot_is_not_tried_again(pi: FakePi) -> None:
    pi.install()
    pi.ok("--reboot")  # the tryboot of B failed: the Pi came back on A
    result = pi.run("--commit")
    assert result.returncode != 0 and "did not boot" in result.stderr
    assert pi.autoboot.read_text() == DEFAULT_AUTOBOOT
    assert pi.run("--commit").returncode != 0
    pi.ok("--reboot")
    assert pi.reboots() == ["tryboot", "normal"]


def test_commit_without_an_install_fails(pi: FakePi) -> None:
    assert pi.run("--commit").returncode != 0
    assert pi.autoboot.read_text() == DEFAULT_AUTOBOOT


def test_commit_after_an_exec_restart_without_reboot_fails(pi: FakePi) -> None:
    pi.install()  # no --reboot: still running slot A
    assert pi.run("--commit").returncode != 0
    pi.ok("--reboot")
    assert pi.reboots() == ["normal"]


def test_rollback_from_the_tried_slot_returns_to_the_old_one(pi: FakePi) -> None:
    pi.install()
    pi.ok("--reboot")
    pi.boot("B")
    result = pi.ok("--rollback")
    assert "slot A" in result.stderr
    assert pi.state_of()["state"] == "rolledback"
    assert pi.autoboot.read_text() == DEFAULT_AUTOBOOT
    pi.ok("--reboot")
    assert pi.reboots() == ["tryboot", "normal"]
    assert pi.run("--commit").returncode != 0
    pi.ok("--rollback")  # idempotent


def test_rollback_undoes_a_commit_cut_short(pi: FakePi) -> None:
    pi.install()
    pi.ok("--reboot")
    pi.boot("B")
    pi.autoboot.write_text(COMMITTED_B)  # the commit rewrote autoboot.txt, then died
    pi.ok("--rollback")
    assert pi.autoboot.read_text() == DEFAULT_AUTOBOOT


def test_rollback_of_a_staged_install_before_the_reboot(pi: FakePi) -> None:
    pi.install()
    pi.ok("--rollback")
    pi.ok("--reboot")
    assert pi.reboots() == ["normal"]


def test_rollback_with_nothing_staged_changes_nothing(pi: FakePi) -> None:
    pi.ok("--rollback")
    assert pi.state_of() == {} and pi.autoboot.read_text() == DEFAULT_AUTOBOOT


def test_a_failed_reboot_command_keeps_the_install_staged(pi: FakePi) -> None:
    pi.install()
    result = pi.run("--reboot", EVSE_AB_REBOOT="false")
    assert result.returncode != 0
    assert pi.state_of()["state"] == "staged"
    pi.ok("--reboot")
    assert pi.reboots() == ["tryboot"]


def test_reboot_is_plain_when_autoboot_does_not_try_the_staged_slot(pi: FakePi) -> None:
    pi.install()
    pi.autoboot.write_text("[all]\ntryboot_a_b=1\nboot_partition=2\n")
    pi.ok("--reboot")
    assert pi.reboots() == ["normal"]


def test_the_config_file_sets_what_the_environment_does_not(pi: FakePi) -> None:
    other = pi.root / "dev/other-slot"
    other.write_bytes(bytes(SLOT_SIZE))
    pi.conf.parent.mkdir(parents=True)
    pi.conf.write_text(f'# slot devices\n  EVSE_AB_SLOT_B="{other}"\nEVSE_AB_STATE=/nonexistent/x\n')
    del pi.env["EVSE_AB_SLOT_B"]
    pi.install()  # EVSE_AB_STATE from the environment wins over the file
    assert pi.slots["B"].read_bytes() != other.read_bytes()
    assert other.read_bytes()[:40_000] == pi.image.read_bytes()
    assert pi.state_of()["state"] == "staged"


def test_status_names_the_slots_and_the_state(pi: FakePi) -> None:
    pi.install()
    out = pi.ok("--status").stdout
    assert "active slot:   A (boot partition 2" in out
    assert "default slot:  A" in out and "tryboot slot:  B" in out
    assert "install state: staged slot B" in out and digest(pi.image) in out
    pi.active_file.unlink()
    assert "active slot:   unknown" in pi.ok("--status").stdout


@pytest.mark.parametrize("args", [[], ["--reboot", "--commit"], ["--bogus"]])
def test_a_wrong_command_line_is_a_usage_error(pi: FakePi, args: list[str]) -> None:
    result = pi.run(*args)
    assert result.returncode == 2 and "usage" in result.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash missing")
def test_the_whole_cycle_also_runs_under_bash(tmp_path: Path) -> None:
    pi = FakePi(tmp_path, shell="bash")
    pi.install()
    pi.ok("--reboot")
    pi.boot("B")
    pi.ok("--commit")
    assert pi.autoboot.read_text() == COMMITTED_B and pi.reboots() == ["tryboot"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck missing")
def test_shellcheck_is_clean() -> None:
    result = subprocess.run(["shellcheck", "-s", "sh", str(HOOK)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make missing")
def test_make_installs_and_removes_the_hook() -> None:
    def dry(target: str) -> str:
        return subprocess.run(
            ["make", "-n", target, "DESTDIR=/stage"], cwd=ROOT, capture_output=True, text=True, timeout=60
        ).stdout

    installed = "install -D -m 0755 systemd/install-firmware /stage/usr/lib/evse/install-firmware"
    assert installed in dry("install")
    assert "rm -rf /stage/usr/lib/evse" in dry("uninstall")
