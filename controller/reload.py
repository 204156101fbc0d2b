"""What a reloaded config (SIGHUP) may change in a running daemon.

Keys in ``LIVE`` apply at once without dropping a session; any other change is reported
by key path as needing a restart and is not applied, so the daemon never runs with a
mix of hardware it has and hardware the file describes.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from controller.config import Config, EvseConfig

LIVE_TABLES = ("auth", "logging")  # whole tables that apply live
LIVE_EVSE_KEYS = ("max_current_a",)


# Config fields whose name is not the file's key path.
KEY_PATHS = {"storage_dir": "storage.dir", "sim_socket": "sim.socket", "sample_hz": "control.sample_hz"}


def _differences(prefix: str, old: Any, new: Any) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [p for k in keys for p in _differences(f"{prefix}.{k}", old.get(k), new.get(k))]
    return [] if old == new else [prefix]


def plan(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """The config to run with, the key paths applied live, and those needing a restart."""
    live: list[str] = []
    restart: list[str] = []
    for f in fields(Config):
        if f.name in ("path", "evses"):
            continue
        changed = _differences(KEY_PATHS.get(f.name, f.name), getattr(old, f.name), getattr(new, f.name))
        (live if f.name in LIVE_TABLES else restart).extend(changed)

    evses = old.evses
    if len(old.evses) != len(new.evses):
        restart.append("evse")
    else:
        updated: list[EvseConfig] = []
        for before, after in zip(old.evses, new.evses, strict=True):
            for f in fields(EvseConfig):
                if getattr(before, f.name) != getattr(after, f.name):
                    where = f"evse {before.id}: {f.name}"
                    (live if f.name in LIVE_EVSE_KEYS else restart).append(where)
            updated.append(replace(before, **{k: getattr(after, k) for k in LIVE_EVSE_KEYS}))
        evses = tuple(updated)
    running = replace(old, evses=evses, **{t: getattr(new, t) for t in LIVE_TABLES})
    # The frame log is opened once at start.
    for key in [p for p in live if p.startswith("logging.frame_log")]:
        live.remove(key)
        restart.append(key)
        running = replace(
            running, logging={**running.logging, key.split(".", 1)[1]: old.logging.get(key.split(".", 1)[1])}
        )
    # Authorization depends on the CSMS link: when [ocpp] changes, auth waits for the restart.
    if new.ocpp != old.ocpp or (running.auth["mode"] == "ocpp" and running.ocpp is None):
        running = replace(running, auth=old.auth)
        restart += [p for p in live if p.startswith("auth.")]
        live = [p for p in live if not p.startswith("auth.")]
    return running, live, restart
