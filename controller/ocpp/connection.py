"""Where and how to reach the CSMS: the config's connection, raised profiles, 2.0.1 slots.

Pure logic. The station may only raise its security profile, never lower it: once it has
connected with a profile, that profile is its floor (persisted with the config profile it
was raised from, so a technician who edits ``security_profile`` takes over again). A
raised profile is tried first; when it cannot connect after a few attempts the station
falls back to the previous connection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

FLOOR_SETTING = "security.floor"  # {"base": config profile, "profile": floor}
TRIAL_SETTING = "security.trial"  # 1.6: {"profile": raised, "from": previous}


@dataclass(frozen=True)
class Target:
    url: str  # the CSMS URL without the station id
    profile: int  # security profile 0..3
    slot: int | None = None  # 2.0.1 network configuration slot; None = the config file
    trial: bool = False  # a raised profile not yet proven

    def describe(self) -> str:
        where = "config" if self.slot is None else f"network slot {self.slot}"
        return f"{self.url} (security profile {self.profile}, {where}{', trial' if self.trial else ''})"


def with_scheme(url: str, profile: int) -> str:
    """The config URL with the scheme the profile needs (same host, port and path)."""
    url = url.rstrip("/")
    rest = url.split("://", 1)[1]
    return ("wss://" if profile >= 2 else "ws://") + rest


def floor(config_profile: int, stored: str | None) -> int:
    try:
        data = json.loads(stored) if stored else None
        if data and int(data["base"]) == config_profile:
            return max(config_profile, int(data["profile"]))
    except (ValueError, KeyError, TypeError):
        pass
    return config_profile


def floor_setting(config_profile: int, profile: int) -> str:
    return json.dumps({"base": config_profile, "profile": profile})


def trial_profile(stored: str | None, current: int) -> int | None:
    try:
        data = json.loads(stored) if stored else None
        if data and int(data["from"]) == current and int(data["profile"]) > current:
            return int(data["profile"])
    except (ValueError, KeyError, TypeError):
        pass
    return None


def targets_16(config_url: str, config_profile: int, floor_profile: int, trial: int | None) -> list[Target]:
    url = with_scheme(config_url, floor_profile) if floor_profile != config_profile else config_url
    current = Target(url, floor_profile)
    if trial is None:
        return [current]
    return [Target(with_scheme(config_url, trial), trial, trial=True), current]


def targets_201(
    config_url: str,
    config_profile: int,
    floor_profile: int,
    slots: dict[int, dict[str, object]],
    priority: list[str],
) -> list[Target]:
    """The slots in NetworkConfigurationPriority order, without those below the floor.

    Slot 0 is the config file unless the CSMS set slot 0 itself.
    """
    found: list[Target] = []
    for item in priority:
        try:
            slot = int(item)
        except ValueError:
            continue
        data = slots.get(slot)
        if data is not None:
            target = Target(str(data["ocppCsmsUrl"]).rstrip("/"), int(str(data["securityProfile"])), slot)
        elif slot == 0:
            target = Target(config_url.rstrip("/"), config_profile, 0)
        else:
            continue
        if target.profile >= floor_profile and target not in found:
            found.append(Target(target.url, target.profile, slot, trial=target.profile > floor_profile))
    if not found:
        found.append(Target(with_scheme(config_url, floor_profile), floor_profile))
    return found


class Chooser:
    """Cycles through targets: ``attempts`` failures in a row move on to the next one."""

    def __init__(self, targets: list[Target], attempts: int) -> None:
        self.targets = targets
        self.attempts = max(1, attempts)
        self.index = 0
        self.failures = 0

    @property
    def current(self) -> Target:
        return self.targets[self.index]

    def failed(self) -> Target | None:
        """Count a failure; the target given up on, if this moved to the next one."""
        self.failures += 1
        if self.failures < self.attempts or len(self.targets) == 1:
            return None
        given_up = self.current
        self.index = (self.index + 1) % len(self.targets)
        self.failures = 0
        return given_up

    def succeeded(self) -> None:
        self.failures = 0
