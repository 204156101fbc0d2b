"""Local authorization (controller/core/authorization.py): the list, the cache, the decision
and their persistence in a real SQLite file."""

from __future__ import annotations

import itertools
import json
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from controller.core.authorization import (
    STATUSES,
    AuthCache,
    AuthSettings,
    Decision,
    IdTagInfo,
    LocalList,
    decide,
    entries_from_ocpp16,
    entries_from_ocpp201,
    info_from_ocpp16,
    info_from_ocpp201,
    info_to_ocpp16,
    info_to_ocpp201,
)
from controller.io.storage import (
    Storage,
    StorageError,
    clear_cache,
    load_cache,
    load_local_list,
    save_cache_entry,
    save_local_list,
    touch_cache_entry,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


OK = IdTagInfo("Accepted")
BLOCKED = IdTagInfo("Blocked")
INVALID = IdTagInfo("Invalid")
OK_UNTIL_1H = IdTagInfo("Accepted", at(3600), "FLEET")
OK_EXPIRED = IdTagInfo("Accepted", at(-1))


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    db = Storage(tmp_path / "evse.db")
    yield db
    db.close()


# -- IdTagInfo ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "now", "status"),
    [
        (OK, at(0), "Accepted"),
        (OK_UNTIL_1H, at(3599), "Accepted"),
        (OK_UNTIL_1H, at(3600), "Expired"),  # valid up to, not at, its expiry
        (OK_UNTIL_1H, at(7200), "Expired"),
        (IdTagInfo("Blocked", at(-10)), at(0), "Blocked"),
        (IdTagInfo("Invalid", at(-10)), at(0), "Invalid"),
    ],
)
def test_effective_status(info: IdTagInfo, now: datetime, status: str) -> None:
    assert info.effective(now) == status


def test_id_tag_info_rejects_unknown_status_and_naive_expiry() -> None:
    with pytest.raises(ValueError, match="status"):
        IdTagInfo("accepted")
    with pytest.raises(ValueError, match="time zone"):
        IdTagInfo("Accepted", datetime(2024, 5, 1, 12))


def test_expiry_in_another_zone_compares_as_the_same_instant() -> None:
    info = IdTagInfo("Accepted", datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert info.effective(at(-1)) == "Accepted"
    assert info.effective(at(0)) == "Expired"


# -- LocalList ---------------------------------------------------------------------------


def test_full_update_replaces_the_list() -> None:
    local = LocalList()
    assert local.apply("Full", 1, [("A", OK), ("B", BLOCKED)]) == "Accepted"
    assert local.apply("Full", 2, [("C", OK_UNTIL_1H)]) == "Accepted"
    assert local.version == 2
    assert local.entries == {"C": OK_UNTIL_1H}
    assert local.get("A") is None


def test_full_update_may_lower_the_version_and_empty_the_list() -> None:
    local = LocalList()
    local.apply("Full", 5, [("A", OK)])
    assert local.apply("Full", 0, []) == "Accepted"
    assert (local.version, len(local)) == (0, 0)


def test_empty_list_is_version_0_after_a_full_update_without_entries() -> None:
    """1.6 section 5.10: "A version number of 0 (zero) SHALL be used to indicate that the
    local authorization list is empty" (also 2.0.1 D01.FR.18: 0 = no list installed)."""
    local = LocalList()
    local.apply("Full", 5, [("A", OK)])
    assert local.apply("Full", 7, []) == "Accepted"
    assert (local.version, len(local)) == (0, 0)
    # What was reported is what counts: a Differential with any positive version follows.
    assert local.apply("Differential", 1, [("B", OK)]) == "Accepted"
    assert (local.version, local.entries) == (1, {"B": OK})


def test_differential_update_that_empties_the_list_makes_it_version_0() -> None:
    local = LocalList()
    local.apply("Full", 3, [("A", OK)])
    assert local.apply("Differential", 4, [("A", None)]) == "Accepted"
    assert (local.version, len(local)) == (0, 0)


def test_differential_update_adds_replaces_and_deletes() -> None:
    local = LocalList()
    local.apply("Full", 1, [("A", OK), ("B", OK), ("C", OK)])
    status = local.apply("Differential", 2, [("A", BLOCKED), ("B", None), ("D", OK_UNTIL_1H), ("NOPE", None)])
    assert status == "Accepted"
    assert local.version == 2
    assert local.entries == {"A": BLOCKED, "C": OK, "D": OK_UNTIL_1H}


@pytest.mark.parametrize("version", [2, 1, 0])
def test_differential_update_needs_a_higher_version(version: int) -> None:
    local = LocalList()
    local.apply("Full", 2, [("A", OK)])
    assert local.apply("Differential", version, [("A", BLOCKED)]) == "VersionMismatch"
    assert (local.version, local.entries) == (2, {"A": OK})


def test_identifiers_are_case_insensitive() -> None:
    local = LocalList()
    local.apply("Full", 1, [("04a1b2c3", OK)])
    assert local.get("04A1B2C3") == OK
    local.apply("Differential", 2, [("04A1B2C3", BLOCKED)])
    assert local.entries == {"04A1B2C3": BLOCKED}


@pytest.mark.parametrize(
    ("update_type", "version", "entries"),
    [
        pytest.param("Full", 3, [("A", OK), ("B", OK), ("A", BLOCKED)], id="duplicate-full"),
        pytest.param("Differential", 3, [("X", OK), ("X", None)], id="duplicate-differential"),
        pytest.param("Full", 3, [("abc", OK), ("ABC", OK)], id="duplicate-other-case"),
        pytest.param("Full", 3, [("A", OK), ("B", None)], id="full-without-info"),
        pytest.param("Full", 3, [("", OK)], id="empty-id"),
        pytest.param("Replace", 3, [("A", OK)], id="unknown-update-type"),
        pytest.param("Full", -1, [("A", OK)], id="negative-version"),
    ],
)
def test_malformed_updates_fail_and_change_nothing(
    update_type: str, version: int, entries: list[tuple[str, IdTagInfo | None]]
) -> None:
    local = LocalList()
    local.apply("Full", 2, [("A", OK), ("Z", OK)])
    assert local.apply(update_type, version, entries) == "Failed"
    assert (local.version, local.entries) == (2, {"A": OK, "Z": OK})


def test_list_length_limits() -> None:
    local = LocalList(max_length=3, send_max=3)
    assert local.apply("Full", 1, [("A", OK), ("B", OK), ("C", OK), ("D", OK)]) == "Failed"  # send_max
    assert local.apply("Full", 1, [("A", OK), ("B", OK), ("C", OK)]) == "Accepted"
    assert local.apply("Differential", 2, [("D", OK)]) == "Failed"  # 4 > max_length
    assert local.apply("Differential", 2, [("A", BLOCKED)]) == "Accepted"  # a replacement adds nothing
    assert local.apply("Differential", 3, [("A", None), ("D", OK)]) == "Accepted"  # a delete makes room
    assert (
        local.apply("Differential", 4, [("NOPE", None), ("E", OK)]) == "Failed"
    )  # deleting nothing does not
    assert sorted(local.entries) == ["B", "C", "D"]
    local.max_length = 5
    assert local.apply("Full", 9, [("A", OK), ("B", OK), ("C", OK)]) == "Accepted"


def test_check_does_not_change_the_list() -> None:
    local = LocalList()
    assert local.check("Full", 1, [("A", OK)]) == "Accepted"
    assert (local.version, len(local)) == (0, 0)


# -- AuthCache ---------------------------------------------------------------------------


def test_cache_evicts_the_least_recently_used() -> None:
    cache = AuthCache(capacity=3)
    for n, tag in enumerate("ABC"):
        cache.update(tag, OK, at(n))
    assert cache.get("a", at(3)) == OK  # a lookup is a use; B is now the oldest
    cache.update("D", OK, at(4))
    assert cache.get("B", at(5)) is None
    assert [cache.get(tag, at(6)) for tag in "ACD"] == [OK, OK, OK]
    cache.update("C", BLOCKED, at(7))  # replacing an entry evicts nothing
    assert len(cache) == 3


@pytest.mark.parametrize("stale", [BLOCKED, INVALID, IdTagInfo("Accepted", at(5))])
def test_cache_evicts_invalid_entries_first(stale: IdTagInfo) -> None:
    cache = AuthCache(capacity=3)
    cache.update("A", OK, at(0))
    cache.update("B", stale, at(1))
    cache.update("C", OK, at(2))
    cache.update("D", OK, at(10))
    assert cache.get("B", at(11)) is None
    assert all(cache.get(tag, at(11)) == OK for tag in "ACD")


def test_expired_cache_entries_are_reported_not_deleted() -> None:
    cache = AuthCache()
    cache.update("A", OK_UNTIL_1H, at(0))
    assert cache.get("A", at(10)) == OK_UNTIL_1H
    assert cache.get("A", at(3600)) == IdTagInfo("Expired", at(3600), "FLEET")
    assert len(cache) == 1
    cache.update("A", IdTagInfo("Accepted", at(7200)), at(3601))
    assert cache.get("A", at(3700)) == IdTagInfo("Accepted", at(7200))


def test_cache_clear_and_capacity() -> None:
    cache = AuthCache(capacity=2)
    cache.update("A", OK, at(0))
    cache.clear()
    assert (len(cache), cache.get("A", at(1))) == (0, None)
    with pytest.raises(ValueError):
        AuthCache(capacity=0)


# -- decide ------------------------------------------------------------------------------

DEFAULT = AuthSettings()
PRE = AuthSettings(local_pre_authorize=True)
NO_OFFLINE = AuthSettings(local_authorize_offline=False)
NO_OFFLINE_UNKNOWN = AuthSettings(local_authorize_offline=False, allow_offline_tx_for_unknown_id=True)
UNKNOWN_OK = AuthSettings(allow_offline_tx_for_unknown_id=True)
NO_LIST = AuthSettings(local_auth_list_enabled=False, local_pre_authorize=True)
NO_CACHE = AuthSettings(auth_cache_enabled=False, local_pre_authorize=True)
NOTHING_LOCAL = AuthSettings(local_auth_list_enabled=False, auth_cache_enabled=False)
EXPIRED_NOW = IdTagInfo("Expired", at(-1))
ASK = Decision("ask", None, "csms")

# (id, online, settings, list entry, cache entry, expected decision)
DECISIONS = [
    # online, no LocalPreAuthorize: always ask
    ("online-unknown", True, DEFAULT, None, None, ASK),
    ("online-list-ok", True, DEFAULT, OK, None, ASK),
    ("online-cache-ok", True, DEFAULT, None, OK, ASK),
    ("online-list-blocked", True, DEFAULT, BLOCKED, None, ASK),
    # online with LocalPreAuthorize: a valid local entry starts at once
    ("pre-list-ok", True, PRE, OK, None, Decision("accept", OK, "local_list")),
    ("pre-cache-ok", True, PRE, None, OK_UNTIL_1H, Decision("accept", OK_UNTIL_1H, "cache")),
    ("pre-list-over-cache", True, PRE, OK, BLOCKED, Decision("accept", OK, "local_list")),
    ("pre-list-blocked-beats-cache-ok", True, PRE, BLOCKED, OK, ASK),
    ("pre-list-expired", True, PRE, OK_EXPIRED, None, ASK),
    ("pre-cache-expired", True, PRE, None, OK_EXPIRED, ASK),
    ("pre-cache-blocked", True, PRE, None, BLOCKED, ASK),
    ("pre-unknown", True, PRE, None, None, ASK),
    ("pre-list-disabled", True, NO_LIST, OK, None, ASK),
    ("pre-list-disabled-cache-blocked", True, NO_LIST, OK, BLOCKED, ASK),
    ("pre-cache-disabled", True, NO_CACHE, None, OK, ASK),
    ("pre-cache-disabled-list-ok", True, NO_CACHE, OK, None, Decision("accept", OK, "local_list")),
    # offline with LocalAuthorizeOffline
    ("off-list-ok", False, DEFAULT, OK, None, Decision("accept", OK, "local_list")),
    ("off-cache-ok", False, DEFAULT, None, OK, Decision("accept", OK, "cache")),
    ("off-list-over-cache", False, DEFAULT, BLOCKED, OK, Decision("reject", BLOCKED, "local_list")),
    ("off-list-expired", False, DEFAULT, OK_EXPIRED, None, Decision("reject", EXPIRED_NOW, "local_list")),
    ("off-cache-expired", False, DEFAULT, None, OK_EXPIRED, Decision("reject", EXPIRED_NOW, "cache")),
    ("off-cache-invalid", False, UNKNOWN_OK, None, INVALID, Decision("reject", INVALID, "cache")),
    (
        "off-list-blocked-unknown-ok",
        False,
        UNKNOWN_OK,
        BLOCKED,
        None,
        Decision("reject", BLOCKED, "local_list"),
    ),
    ("off-unknown", False, DEFAULT, None, None, Decision("reject", None, "unknown")),
    ("off-unknown-allowed", False, UNKNOWN_OK, None, None, Decision("accept", None, "unknown")),
    (
        "off-list-disabled",
        False,
        AuthSettings(local_auth_list_enabled=False),
        OK,
        None,
        Decision("reject", None, "unknown"),
    ),
    (
        "off-cache-disabled",
        False,
        AuthSettings(auth_cache_enabled=False),
        None,
        OK,
        Decision("reject", None, "unknown"),
    ),
    (
        "off-nothing-local-unknown-ok",
        False,
        NOTHING_LOCAL,
        BLOCKED,
        BLOCKED,
        Decision("reject", None, "unknown"),
    ),
    # offline without LocalAuthorizeOffline: the unknown-id rule, known invalid ids still refused
    ("nooff-list-ok", False, NO_OFFLINE, OK, None, Decision("reject", None, "unknown")),
    ("nooff-cache-ok", False, NO_OFFLINE, None, OK, Decision("reject", None, "unknown")),
    ("nooff-unknown", False, NO_OFFLINE, None, None, Decision("reject", None, "unknown")),
    ("nooff-unknown-allowed", False, NO_OFFLINE_UNKNOWN, None, None, Decision("accept", None, "unknown")),
    (
        "nooff-list-ok-unknown-allowed",
        False,
        NO_OFFLINE_UNKNOWN,
        OK,
        None,
        Decision("accept", None, "unknown"),
    ),
    ("nooff-blocked", False, NO_OFFLINE_UNKNOWN, BLOCKED, None, Decision("reject", BLOCKED, "local_list")),
]


def stores(list_entry: IdTagInfo | None, cache_entry: IdTagInfo | None) -> tuple[LocalList, AuthCache]:
    local, cache = LocalList(), AuthCache()
    if list_entry is not None:
        local.apply("Full", 1, [("04A1", list_entry)])
    if cache_entry is not None:
        cache.update("04a1", cache_entry, at(-100))
    return local, cache


@pytest.mark.parametrize(
    ("online", "settings", "list_entry", "cache_entry", "expected"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_decide(
    online: bool,
    settings: AuthSettings,
    list_entry: IdTagInfo | None,
    cache_entry: IdTagInfo | None,
    expected: Decision,
) -> None:
    local, cache = stores(list_entry, cache_entry)
    assert decide("04a1", at(0), online, local, cache, settings) == expected


ENTRIES = [None, OK, OK_EXPIRED, BLOCKED]


@pytest.mark.parametrize("online", [True, False])
@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=5)))
def test_decide_invariants(online: bool, flags: tuple[bool, ...]) -> None:
    """Every combination of settings and list/cache contents obeys the general rules."""
    settings = AuthSettings(*flags)
    for list_entry, cache_entry in itertools.product(ENTRIES, ENTRIES):
        local, cache = stores(list_entry, cache_entry)
        d = decide("04A1", at(0), online, local, cache, settings)
        used = list_entry if settings.local_auth_list_enabled and list_entry else None
        if used is None and settings.auth_cache_enabled:
            used = cache_entry
        if online:
            assert d.outcome in ("accept", "ask")
            if d.outcome == "accept":
                assert settings.local_pre_authorize and used is not None
                assert used.effective(at(0)) == "Accepted"
        elif used is not None and used.effective(at(0)) != "Accepted":
            assert d.outcome == "reject"  # a known invalid id never charges offline
        elif used is not None and settings.local_authorize_offline:
            assert d.outcome == "accept"
        else:
            assert d == Decision(
                "accept" if settings.allow_offline_tx_for_unknown_id else "reject", None, "unknown"
            )


# -- OCPP 1.6 JSON -----------------------------------------------------------------------


def test_ocpp16_round_trip() -> None:
    wire = {"status": "Accepted", "expiryDate": "2024-05-01T13:00:00.000Z", "parentIdTag": "FLEET"}
    info = info_from_ocpp16(wire)
    assert info == OK_UNTIL_1H
    assert info_to_ocpp16(info) == wire
    assert info_to_ocpp16(BLOCKED) == {"status": "Blocked"}


def test_ocpp16_parsing_variants() -> None:
    # snake_case as the ocpp library hands payloads to handlers; offsets other than Z
    snake = {"status": "Accepted", "expiry_date": "2024-05-01T15:00:00+02:00", "parent_id_tag": "FLEET"}
    assert info_from_ocpp16(snake) == OK_UNTIL_1H
    naive = info_from_ocpp16({"status": "Accepted", "expiryDate": "2024-05-01T13:00:00"})
    assert naive.expiry == at(3600)  # an offset left out means UTC


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"status": "Maybe"},
        {"status": "Accepted", "expiryDate": "tomorrow"},
        {"status": "Accepted", "expiryDate": 1714564800},
        {"status": "Accepted", "parentIdTag": 7},
    ],
)
def test_malformed_ocpp16_info(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        info_from_ocpp16(bad)


def test_entries_from_ocpp16() -> None:
    wire: list[dict[str, Any]] = [{"idTag": "A", "idTagInfo": {"status": "Blocked"}}, {"idTag": "B"}]
    assert entries_from_ocpp16(wire) == [("A", BLOCKED), ("B", None)]
    assert entries_from_ocpp16([{"id_tag": "C", "id_tag_info": {"status": "Accepted"}}]) == [("C", OK)]
    with pytest.raises(ValueError, match="idTag"):
        entries_from_ocpp16([{"idTagInfo": {"status": "Accepted"}}])


def test_ocpp16_refuses_the_statuses_only_201_has() -> None:
    with pytest.raises(ValueError, match=r"1\.6"):
        info_from_ocpp16({"status": "NoCredit"})


# -- OCPP 2.0.1 JSON ---------------------------------------------------------------------


def v201_validator(message: str) -> Draft4Validator:
    text = (files("ocpp") / "v201" / "schemas" / f"{message}.json").read_text()
    return Draft4Validator(json.loads(text))


AUTHORIZE_201 = v201_validator("AuthorizeResponse")
STATUSES_201 = AUTHORIZE_201.schema["definitions"]["AuthorizationStatusEnumType"]["enum"]


def test_every_201_status_is_known_and_only_accepted_authorizes() -> None:
    assert set(STATUSES_201) == STATUSES
    local, cache = LocalList(), AuthCache()
    local.apply("Full", 1, [(status, IdTagInfo(status, at(3600))) for status in STATUSES_201])
    for status in STATUSES_201:
        offline = decide(status.lower(), at(0), False, local, cache, UNKNOWN_OK)
        online = decide(status, at(0), True, local, cache, PRE)
        if status == "Accepted":
            assert (offline.outcome, online.outcome) == ("accept", "accept")
        else:
            assert offline == Decision("reject", IdTagInfo(status, at(3600)), "local_list")
            assert online == ASK
    assert IdTagInfo("NoCredit", at(-1)).effective(at(0)) == "NoCredit"  # only Accepted expires


def test_ocpp201_round_trip_inside_an_authorize_response() -> None:
    wire = {
        "status": "Accepted",
        "cacheExpiryDateTime": "2024-05-01T13:00:00.000Z",
        "groupIdToken": {"idToken": "FLEET", "type": "Central"},
    }
    info = info_from_ocpp201(wire)
    assert info == OK_UNTIL_1H
    assert info_to_ocpp201(info) == wire
    assert info_to_ocpp201(IdTagInfo("NotAtThisTime")) == {"status": "NotAtThisTime"}
    for sent in (OK, OK_UNTIL_1H, IdTagInfo("NoCredit", at(5), "P")):
        AUTHORIZE_201.validate({"idTokenInfo": info_to_ocpp201(sent)})


def test_ocpp201_parsing_ignores_what_id_tag_info_cannot_hold() -> None:
    wire = {
        "status": "Blocked",
        "cacheExpiryDateTime": "2024-05-01T15:00:00+02:00",
        "chargingPriority": 3,
        "language1": "nl",
        "evseId": [1],
        "groupIdToken": {
            "idToken": "FLEET",
            "type": "Local",
            "additionalInfo": [{"additionalIdToken": "x", "type": "y"}],
        },
        "personalMessage": {"format": "UTF8", "content": "Hoi"},
    }
    AUTHORIZE_201.validate({"idTokenInfo": wire})
    assert info_from_ocpp201(wire) == IdTagInfo("Blocked", at(3600), "FLEET")
    snake = {
        "status": "Accepted",
        "cache_expiry_date_time": "2024-05-01T13:00:00Z",
        "group_id_token": {"id_token": "FLEET", "type": "Central"},
    }
    assert info_from_ocpp201(snake) == OK_UNTIL_1H


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({}, "status"),
        ({"status": "Maybe"}, "status"),
        ({"status": "Accepted", "cacheExpiryDateTime": "tomorrow"}, "tomorrow"),
        ({"status": "Accepted", "cacheExpiryDateTime": 1714564800}, "cacheExpiryDateTime"),
        ({"status": "Accepted", "groupIdToken": "FLEET"}, "groupIdToken"),
        ({"status": "Accepted", "groupIdToken": {"type": "Central"}}, "groupIdToken"),
        ({"status": "Accepted", "groupIdToken": {"idToken": 7, "type": "Central"}}, "groupIdToken"),
        ("Accepted", "object"),
    ],
)
def test_malformed_ocpp201_info(bad: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        info_from_ocpp201(bad)


def test_entries_from_ocpp201_key_by_the_id_token_string() -> None:
    wire: list[dict[str, Any]] = [
        {"idToken": {"idToken": "04a1", "type": "ISO14443"}, "idTokenInfo": {"status": "NoCredit"}},
        {"idToken": {"idToken": "B", "type": "Central"}},
    ]
    v201_validator("SendLocalListRequest").validate(
        {"versionNumber": 2, "updateType": "Differential", "localAuthorizationList": wire}
    )
    entries = entries_from_ocpp201(wire)
    assert entries == [("04a1", IdTagInfo("NoCredit")), ("B", None)]
    local = LocalList()
    local.apply("Full", 1, [("b", OK)])
    assert local.apply("Differential", 2, entries) == "Accepted"
    assert local.entries == {"04A1": IdTagInfo("NoCredit")}  # normalized like a 1.6 idTag
    snake = [{"id_token": {"id_token": "C", "type": "Local"}, "id_token_info": {"status": "Accepted"}}]
    assert entries_from_ocpp201(snake) == [("C", OK)]


@pytest.mark.parametrize(
    "bad",
    [
        [{"idTokenInfo": {"status": "Accepted"}}],
        [{"idToken": "04A1"}],
        [{"idToken": {"type": "ISO14443"}}],
        [{"idToken": {"idToken": "A", "type": "ISO14443"}, "idTokenInfo": {"status": "Maybe"}}],
        ["04A1"],
    ],
)
def test_malformed_ocpp201_entries(bad: list[Any]) -> None:
    with pytest.raises(ValueError):
        entries_from_ocpp201(bad)


# -- persistence -------------------------------------------------------------------------


def test_local_list_round_trip(storage: Storage, tmp_path: Path) -> None:
    assert (load_local_list(storage).version, len(load_local_list(storage))) == (0, 0)
    save_local_list(storage, "Full", 1, [("a", OK), ("B", OK_UNTIL_1H), ("C", BLOCKED)])
    save_local_list(storage, "Differential", 2, [("A", INVALID), ("c", None), ("D", OK)])
    storage.close()
    reopened = Storage(tmp_path / "evse.db")
    try:
        loaded = load_local_list(reopened)
    finally:
        reopened.close()
    assert loaded.version == 2
    assert loaded.entries == {"A": INVALID, "B": OK_UNTIL_1H, "D": OK}


def test_201_statuses_are_stored_and_loaded(storage: Storage) -> None:
    entries = [(status, IdTagInfo(status, at(60), "P")) for status in sorted(STATUSES)]
    save_local_list(storage, "Full", 3, entries)
    assert load_local_list(storage).entries == {status.upper(): info for status, info in entries}
    save_cache_entry(storage, "A", IdTagInfo("NotAtThisLocation"), at(0))
    assert load_cache(storage).get("a", at(1)) == IdTagInfo("NotAtThisLocation")


def test_c10_cache_life_time_counts_from_the_last_use_across_restarts(storage: Storage) -> None:
    """AuthCacheCtrlr.LifeTime: "how long it takes until a token expires in the authorization
    cache since it is last used". An entry loaded at start counts as used when it was last
    stored or used (not never: it expires unused), and a use is stored too, so a restart
    does not cut its lifetime short."""
    save_cache_entry(storage, "A", OK, at(0))
    save_cache_entry(storage, "B", OK, at(0))
    touch_cache_entry(storage, "B", at(100))  # B decided a start at 100 s
    touch_cache_entry(storage, "B", at(50))  # a late write of an older use changes nothing
    cache = load_cache(storage)  # a restart
    assert cache.get("A", at(61), lifetime_s=60) is None  # never used since it was stored
    assert cache.get("B", at(150), lifetime_s=60) == OK  # 50 s after its last use
    assert cache.get("B", at(211), lifetime_s=60) is None


def test_full_save_replaces_the_table(storage: Storage) -> None:
    save_local_list(storage, "Full", 4, [("A", OK), ("B", OK)])
    save_local_list(storage, "Full", 1, [])
    # An empty list is version 0 (1.6 section 5.10), also after a restart.
    assert load_local_list(storage) == LocalList(version=0)


def test_refused_save_changes_nothing(storage: Storage) -> None:
    save_local_list(storage, "Full", 1, [("A", OK)])
    with pytest.raises(StorageError) as raised:
        save_local_list(storage, "Full", 2, [("B", OK), ("b", OK)])
    assert not raised.value.retry
    assert load_local_list(storage) == LocalList(version=1, entries={"A": OK})
    with pytest.raises(ValueError):
        save_local_list(storage, "Full", 2, [("B", None)])


def test_locked_database_is_a_retryable_storage_error(storage: Storage) -> None:
    other = sqlite3.connect(storage.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError, match="cannot write the local authorization list") as raised:
            save_local_list(storage, "Full", 1, [("A", OK)])
        assert raised.value.retry
        with pytest.raises(StorageError, match="cannot write"):
            save_cache_entry(storage, "A", OK, at(0))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not storage.db.in_transaction
    save_local_list(storage, "Full", 1, [("A", OK)])
    assert load_local_list(storage).entries == {"A": OK}


def test_corrupt_local_list_is_refused(storage: Storage) -> None:
    storage.db.execute("INSERT INTO local_list VALUES ('A', 'Sometimes', NULL, NULL)")
    with pytest.raises(StorageError, match="corrupt") as raised:
        load_local_list(storage)
    assert not raised.value.retry


def test_cache_round_trip_keeps_order_of_use(storage: Storage, tmp_path: Path) -> None:
    save_cache_entry(storage, "a", OK, at(0))
    save_cache_entry(storage, "B", OK_UNTIL_1H, at(1))
    save_cache_entry(storage, "C", INVALID, at(2))
    save_cache_entry(storage, "A", OK, at(3))  # used again: now the most recent
    storage.close()
    reopened = Storage(tmp_path / "evse.db")
    try:
        assert [load_cache(reopened).get(tag, at(4)) for tag in "ABC"] == [OK, OK_UNTIL_1H, INVALID]
        cache = load_cache(reopened, capacity=2)  # C is invalid: it goes first
        assert [cache.get(tag, at(4)) for tag in "ABC"] == [OK, OK_UNTIL_1H, None]
        save_cache_entry(reopened, "C", OK, at(5))
        cache = load_cache(reopened, capacity=2)  # all valid: B, the least recently used, goes
        assert [cache.get(tag, at(6)) for tag in "ABC"] == [OK, None, OK]
        clear_cache(reopened)
        assert len(load_cache(reopened)) == 0
    finally:
        reopened.close()


def test_corrupt_cache_rows_are_skipped(storage: Storage) -> None:
    save_cache_entry(storage, "A", OK, at(0))
    storage.db.execute("INSERT INTO auth_cache VALUES ('B', 'Nope', NULL, NULL, '2024-05-01T12:00:01.000Z')")
    storage.db.execute(
        "INSERT INTO auth_cache VALUES ('C', 'Accepted', 'soon', NULL, '2024-05-01T12:00:02.000Z')"
    )
    cache = load_cache(storage)
    assert (len(cache), cache.get("A", at(5))) == (1, OK)


def test_cache_table_is_trimmed_like_the_cache(storage: Storage) -> None:
    save_cache_entry(storage, "A", OK, at(0), capacity=3)
    save_cache_entry(storage, "B", IdTagInfo("Accepted", at(5)), at(1), capacity=3)
    save_cache_entry(storage, "C", OK, at(2), capacity=3)
    save_cache_entry(storage, "D", BLOCKED, at(10), capacity=3)  # B has expired: it goes, not A
    tags = [row[0] for row in storage.db.execute("SELECT id_tag FROM auth_cache ORDER BY id_tag")]
    assert tags == ["A", "C", "D"]
    save_cache_entry(storage, "E", OK, at(11), capacity=3)  # D is invalid: it goes
    save_cache_entry(storage, "F", OK, at(12), capacity=3)  # all valid: the oldest (A) goes
    tags = [row[0] for row in storage.db.execute("SELECT id_tag FROM auth_cache ORDER BY id_tag")]
    assert tags == ["C", "E", "F"]


INFOS = st.sampled_from([OK, BLOCKED, INVALID, OK_UNTIL_1H, IdTagInfo("Accepted", at(5))])
TAGS = st.sampled_from(["A", "b", "B", "C", "D", "E"])
UPDATES = st.lists(
    st.tuples(
        st.sampled_from(["Full", "Differential"]),
        st.integers(0, 6),
        st.lists(st.tuples(TAGS, st.one_of(st.none(), INFOS)), max_size=5),
    ),
    max_size=8,
)


@given(UPDATES)
def test_saved_list_matches_the_list_in_memory(
    updates: list[tuple[str, int, list[tuple[str, IdTagInfo | None]]]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "evse.db")
        try:
            local = LocalList(max_length=4)
            for update_type, version, entries in updates:
                if local.check(update_type, version, entries) == "Accepted":
                    save_local_list(storage, update_type, version, entries)
                local.apply(update_type, version, entries)
                loaded = load_local_list(storage)
                assert (loaded.version, loaded.entries) == (local.version, local.entries)
        finally:
            storage.close()


@given(st.lists(st.tuples(TAGS, INFOS), max_size=20))
def test_saved_cache_matches_the_cache_in_memory(updates: list[tuple[str, IdTagInfo]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "evse.db")
        try:
            cache = AuthCache(capacity=3)
            for n, (tag, info) in enumerate(updates):
                cache.update(tag, info, at(n))
                save_cache_entry(storage, tag, info, at(n), capacity=3)
            loaded = load_cache(storage, capacity=3)
            now = at(len(updates))
            assert len(loaded) == len(cache)
            for tag in "ABCDE":
                assert loaded.get(tag, now) == cache.get(tag, now)
        finally:
            storage.close()


# -- size ----------------------------------------------------------------------------------


def test_fifty_thousand_entries(storage: Storage) -> None:
    """Timings are printed (pytest -s), not asserted: CI machines vary."""
    wire = [
        {"idTag": f"{n:014X}", "idTagInfo": {"status": "Accepted", "expiryDate": "2030-01-01T00:00:00Z"}}
        for n in range(50_000)
    ]
    t0 = time.perf_counter()
    entries = entries_from_ocpp16(wire)
    t1 = time.perf_counter()
    local = LocalList()
    assert local.apply("Full", 1, entries) == "Accepted"
    t2 = time.perf_counter()
    save_local_list(storage, "Full", 1, entries)
    t3 = time.perf_counter()
    loaded = load_local_list(storage)
    t4 = time.perf_counter()
    differential = [(f"{n:014X}", None if n % 2 else BLOCKED) for n in range(0, 50_000, 5)]
    assert local.apply("Differential", 2, differential) == "Accepted"
    t5 = time.perf_counter()
    save_local_list(storage, "Differential", 2, differential)
    t6 = time.perf_counter()
    assert len(loaded) == 50_000
    assert load_local_list(storage).entries == local.entries
    print(
        f"\n50,000 entries: parse {t1 - t0:.3f} s, apply Full {t2 - t1:.3f} s, save Full {t3 - t2:.3f} s, "
        f"load {t4 - t3:.3f} s; 10,000-entry Differential: apply {t5 - t4:.3f} s, save {t6 - t5:.3f} s"
    )
