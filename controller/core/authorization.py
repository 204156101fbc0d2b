"""OCPP local authorization: the Local Authorization List, the Authorization Cache and
the decision whether an identifier may start charging without asking the CSMS.

The logic is version neutral and uses the OCPP words for statuses (2.0.1 has more of them;
only Accepted authorizes); a 2.0.1 IdTokenInfo maps onto ``IdTagInfo``. It does no I/O and
takes the time as an argument (aware UTC datetimes); ``controller.io.storage`` keeps the
list and the cache.

Identifiers are case insensitive in OCPP (1.6 CiString, 2.0.1 IdToken), so both stores
key their entries by ``normalize_id``: "04a1b2" and "04A1B2" are the same card.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from controller.core.timestamps import parse_timestamp, timestamp

log = logging.getLogger(__name__)

ACCEPTED = "Accepted"
BLOCKED = "Blocked"
EXPIRED = "Expired"
INVALID = "Invalid"
CONCURRENT_TX = "ConcurrentTx"
STATUSES_16 = frozenset({ACCEPTED, BLOCKED, EXPIRED, INVALID, CONCURRENT_TX})
# 2.0.1 AuthorizationStatusEnumType adds these; like every status but Accepted, they refuse.
STATUSES = STATUSES_16 | {"NoCredit", "NotAllowedTypeEVSE", "NotAtThisLocation", "NotAtThisTime", "Unknown"}
# The IdToken type of a group identifier the CSMS hands out (2.0.1 has no bare parent id).
GROUP_TOKEN_TYPE = "Central"

FULL = "Full"
DIFFERENTIAL = "Differential"

# SendLocalList answers.
UPDATE_ACCEPTED = "Accepted"
UPDATE_FAILED = "Failed"
VERSION_MISMATCH = "VersionMismatch"

# Decision outcomes and sources.
ACCEPT = "accept"
REJECT = "reject"
ASK = "ask"
SOURCE_LOCAL_LIST = "local_list"
SOURCE_CACHE = "cache"
SOURCE_CSMS = "csms"
SOURCE_UNKNOWN = "unknown"  # decided by AllowOfflineTxForUnknownId alone

DEFAULT_LIST_MAX_LENGTH = 100_000
DEFAULT_CACHE_CAPACITY = 1000
LOCAL_LIST_VERSION_KEY = "local_list_version"


def normalize_id(id_tag: str) -> str:
    """The key an identifier is stored under; OCPP compares identifiers case-insensitively."""
    return id_tag.upper()


@dataclass(frozen=True)
class IdTagInfo:
    """What the CSMS says about an identifier (OCPP 1.6 IdTagInfo, the core of 2.0.1 IdTokenInfo)."""

    status: str
    expiry: datetime | None = None
    parent: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown authorization status {self.status!r}")
        if self.expiry is not None and self.expiry.utcoffset() is None:
            raise ValueError(f"expiry {self.expiry} has no time zone")

    def effective(self, now: datetime) -> str:
        """The status at ``now``: an Accepted identifier is Expired from its expiry on."""
        if self.status == ACCEPTED and self.expiry is not None and self.expiry <= now:
            return EXPIRED
        return self.status

    def at(self, now: datetime) -> IdTagInfo:
        """This info with its status made effective at ``now``."""
        status = self.effective(now)
        return self if status == self.status else replace(self, status=status)


@dataclass
class LocalList:
    """The Local Authorization List the CSMS manages with SendLocalList.

    ``version`` is what GetLocalListVersion reports: 0 whenever the list is empty, also
    after an update that emptied it (1.6 section 5.10: "A version number of 0 (zero) SHALL
    be used to indicate that the local authorization list is empty").
    ``max_length`` is LocalAuthListMaxLength, ``send_max`` SendLocalListMaxLength.
    """

    version: int = 0
    entries: dict[str, IdTagInfo] = field(default_factory=dict)
    max_length: int = DEFAULT_LIST_MAX_LENGTH
    send_max: int = DEFAULT_LIST_MAX_LENGTH

    def get(self, id_tag: str) -> IdTagInfo | None:
        """The entry for ``id_tag`` as stored (expiry not applied), or None."""
        return self.entries.get(normalize_id(id_tag))

    def __len__(self) -> int:
        return len(self.entries)

    def check(self, update_type: str, version: int, entries: Sequence[tuple[str, IdTagInfo | None]]) -> str:
        """The SendLocalList answer ``apply`` would give, without changing the list.

        Lets a caller persist an update before applying it in memory.
        """
        full = update_type == FULL
        if not full and update_type != DIFFERENTIAL:
            return UPDATE_FAILED
        if version < 0:
            return UPDATE_FAILED
        if not full and version <= self.version:
            return VERSION_MISMATCH
        if len(entries) > self.send_max:
            return UPDATE_FAILED
        current = self.entries
        size = 0 if full else len(current)
        seen: set[str] = set()
        for id_tag, info in entries:
            key = normalize_id(id_tag)
            if not key or key in seen:
                return UPDATE_FAILED
            seen.add(key)
            if info is None:
                if full:
                    return UPDATE_FAILED
                if key in current:
                    size -= 1
            elif full or key not in current:
                size += 1
        return UPDATE_FAILED if size > self.max_length else UPDATE_ACCEPTED

    def apply(self, update_type: str, version: int, entries: Sequence[tuple[str, IdTagInfo | None]]) -> str:
        """Apply a SendLocalList update; returns Accepted, VersionMismatch or Failed.

        Full replaces the list; in a Differential update an entry without info deletes
        the identifier. Anything but Accepted leaves the list unchanged.
        """
        status = self.check(update_type, version, entries)
        if status != UPDATE_ACCEPTED:
            return status
        share = sharing(self.entries.values())
        if update_type == FULL:
            self.entries = {normalize_id(id_tag): share(info) for id_tag, info in entries if info is not None}
        else:
            for id_tag, info in entries:
                if info is None:
                    self.entries.pop(normalize_id(id_tag), None)
                else:
                    self.entries[normalize_id(id_tag)] = share(info)
        self.version = version if self.entries else 0
        return UPDATE_ACCEPTED


def sharing(known: Iterable[IdTagInfo] = ()) -> Callable[[IdTagInfo], IdTagInfo]:
    """A function that returns one shared object for equal infos. Most entries of a local
    list say the same thing ("Accepted"): one object each, instead of tens of thousands
    the garbage collector walks at every full collection."""
    seen = {info: info for info in known}
    return lambda info: seen.setdefault(info, info)


class AuthCache:
    """The Authorization Cache: the last IdTagInfo the CSMS gave for each identifier.

    When full, an entry that is no longer valid (expired or not Accepted) makes room
    first, else the least recently used one.
    """

    def __init__(self, capacity: int = DEFAULT_CACHE_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, IdTagInfo] = OrderedDict()  # least recently used first
        self._used: dict[str, datetime] = {}  # when each entry was stored or last looked up

    def __len__(self) -> int:
        return len(self._entries)

    def update(self, id_tag: str, info: IdTagInfo, now: datetime) -> None:
        """Record what the CSMS answered for ``id_tag``."""
        key = normalize_id(id_tag)
        self._used[key] = now
        if key in self._entries:
            self._entries[key] = info
            self._entries.move_to_end(key)
            return
        while len(self._entries) >= self.capacity:
            self._evict(now)
        self._entries[key] = info

    def _evict(self, now: datetime) -> None:
        stale = next((key for key, info in self._entries.items() if info.effective(now) != ACCEPTED), None)
        if stale is None:
            stale, _ = self._entries.popitem(last=False)
        else:
            del self._entries[stale]
        self._used.pop(stale, None)

    def get(self, id_tag: str, now: datetime, lifetime_s: float | None = None) -> IdTagInfo | None:
        """The entry with its status made effective at ``now`` (kept even when expired).

        With ``lifetime_s`` (2.0.1 AuthCacheCtrlr.LifeTime) an entry not used for that long
        is removed instead: "how long it takes until a token expires in the cache since it
        is last used".
        """
        key = normalize_id(id_tag)
        info = self._entries.get(key)
        if info is None:
            return None
        used = self._used.get(key)
        if lifetime_s is not None and used is not None and (now - used).total_seconds() > lifetime_s:
            del self._entries[key]
            del self._used[key]
            return None
        self._entries.move_to_end(key)
        self._used[key] = now
        return info.at(now)

    def clear(self) -> None:
        """Empty the cache (ClearCache)."""
        self._entries.clear()
        self._used.clear()


@dataclass(frozen=True)
class AuthSettings:
    """The OCPP 1.6 configuration keys that govern local authorization."""

    local_auth_list_enabled: bool = True
    auth_cache_enabled: bool = True
    local_pre_authorize: bool = False
    local_authorize_offline: bool = True
    allow_offline_tx_for_unknown_id: bool = False
    cache_lifetime_s: float | None = None  # 2.0.1 AuthCacheCtrlr.LifeTime; None: no limit


@dataclass(frozen=True)
class Decision:
    """What to do with a presented identifier.

    ``outcome`` is "accept" (start without asking the CSMS), "reject" or "ask" (send
    Authorize). ``info`` is the local entry the decision rests on, with its effective
    status; ``source`` is "local_list", "cache", "csms" (ask) or "unknown" (decided by
    AllowOfflineTxForUnknownId).
    """

    outcome: str
    info: IdTagInfo | None
    source: str


def _lookup(
    id_tag: str, now: datetime, local_list: LocalList, cache: AuthCache, settings: AuthSettings
) -> tuple[IdTagInfo, str] | None:
    # The list has priority: an identifier in it is never looked up in the cache.
    if settings.local_auth_list_enabled:
        info = local_list.get(id_tag)
        if info is not None:
            return info.at(now), SOURCE_LOCAL_LIST
    if settings.auth_cache_enabled:
        info = cache.get(id_tag, now, settings.cache_lifetime_s)
        if info is not None:
            return info, SOURCE_CACHE
    return None


def decide(
    id_tag: str,
    now: datetime,
    online: bool,
    local_list: LocalList,
    cache: AuthCache,
    settings: AuthSettings,
) -> Decision:
    """Whether ``id_tag`` may start charging now, must be refused, or the CSMS must be asked."""
    if online and not settings.local_pre_authorize:
        return Decision(ASK, None, SOURCE_CSMS)
    found = _lookup(id_tag, now, local_list, cache, settings)
    if online:
        if found is not None and found[0].status == ACCEPTED:
            return Decision(ACCEPT, found[0], found[1])
        return Decision(ASK, None, SOURCE_CSMS)
    if found is not None:
        info, source = found
        # A known identifier that is not valid is refused even when unknown ones are
        # allowed (OCPP 1.6, "Unknown Offline Authorization").
        if info.status != ACCEPTED:
            return Decision(REJECT, info, source)
        if settings.local_authorize_offline:
            return Decision(ACCEPT, info, source)
    allowed = settings.allow_offline_tx_for_unknown_id
    return Decision(ACCEPT if allowed else REJECT, None, SOURCE_UNKNOWN)


# -- OCPP 1.6 JSON -----------------------------------------------------------------------
# Both camelCase (the wire) and snake_case (what the ``ocpp`` library hands to handlers)
# keys are read.


def _field(d: Mapping[str, Any], camel: str, snake: str) -> Any:
    return d[camel] if camel in d else d.get(snake)


# Lists tend to share a handful of expiry dates; caching their conversions makes a
# 50,000-entry list markedly faster to parse, save and load.
@functools.lru_cache(maxsize=1024)
def parse_expiry(text: str) -> datetime:
    moment = parse_timestamp(text)
    # OCPP wants UTC; a CSMS that leaves out the offset means UTC too.
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


def info_from_ocpp16(d: Mapping[str, Any]) -> IdTagInfo:
    """An IdTagInfo from its 1.6 JSON form; ValueError if it is malformed."""
    status = _field(d, "status", "status")
    if not isinstance(status, str):
        raise ValueError(f"idTagInfo without a status: {d!r}")
    if status not in STATUSES_16:
        raise ValueError(f"unknown OCPP 1.6 authorization status {status!r}")
    expiry = _field(d, "expiryDate", "expiry_date")
    parent = _field(d, "parentIdTag", "parent_id_tag")
    if expiry is not None and not isinstance(expiry, str):
        raise ValueError(f"idTagInfo with a malformed expiryDate: {d!r}")
    if parent is not None and not isinstance(parent, str):
        raise ValueError(f"idTagInfo with a malformed parentIdTag: {d!r}")
    return IdTagInfo(status, parse_expiry(expiry) if expiry is not None else None, parent)


def info_to_ocpp16(info: IdTagInfo) -> dict[str, str]:
    """The 1.6 JSON form of ``info``; absent fields are left out."""
    d = {"status": info.status}
    if info.expiry is not None:
        d["expiryDate"] = timestamp(info.expiry)
    if info.parent is not None:
        d["parentIdTag"] = info.parent
    return d


def entries_from_ocpp16(
    local_authorization_list: Sequence[Mapping[str, Any]],
) -> list[tuple[str, IdTagInfo | None]]:
    """The entries of a SendLocalList.req localAuthorizationList; ValueError if malformed."""
    entries: list[tuple[str, IdTagInfo | None]] = []
    parse = _memoized(info_from_ocpp16)
    for item in local_authorization_list:
        id_tag = _field(item, "idTag", "id_tag")
        if not isinstance(id_tag, str):
            raise ValueError(f"authorization data without an idTag: {item!r}")
        info = _field(item, "idTagInfo", "id_tag_info")
        entries.append((id_tag, parse(info) if info is not None else None))
    return entries


def _memoized(parse: Callable[[Mapping[str, Any]], IdTagInfo]) -> Callable[[Mapping[str, Any]], IdTagInfo]:
    """``parse`` for one list: an info seen before (the same flat fields) is parsed once,
    and its entries share the result. A list of 50,000 is mostly the same few infos."""
    seen: dict[tuple[Any, ...], IdTagInfo] = {}

    def cached(info: Mapping[str, Any]) -> IdTagInfo:
        try:
            key = tuple(info.items())
            found = seen.get(key)
        except (AttributeError, TypeError):  # not a mapping, or nested (unhashable): no cache
            return parse(info)
        if found is None:
            found = seen[key] = parse(info)
        return found

    return cached


# -- OCPP 2.0.1 JSON ---------------------------------------------------------------------
# Read in camelCase and snake_case as in 1.6; the fields IdTagInfo has no room for
# (chargingPriority, language1/2, evseId, personalMessage) are ignored.


def info_from_ocpp201(d: Mapping[str, Any]) -> IdTagInfo:
    """An IdTagInfo from a 2.0.1 IdTokenInfoType; ValueError if it is malformed."""
    if not isinstance(d, Mapping):
        raise ValueError(f"idTokenInfo is not an object: {d!r}")
    status = _field(d, "status", "status")
    if not isinstance(status, str):
        raise ValueError(f"idTokenInfo without a status: {d!r}")
    expiry = _field(d, "cacheExpiryDateTime", "cache_expiry_date_time")
    if expiry is not None and not isinstance(expiry, str):
        raise ValueError(f"idTokenInfo with a malformed cacheExpiryDateTime: {d!r}")
    group = _field(d, "groupIdToken", "group_id_token")
    parent = None if group is None else _token_id(group, "groupIdToken")
    return IdTagInfo(status, parse_expiry(expiry) if expiry is not None else None, parent)


def info_to_ocpp201(info: IdTagInfo) -> dict[str, Any]:
    """The 2.0.1 IdTokenInfoType of ``info``; a parent becomes a Central groupIdToken."""
    d: dict[str, Any] = {"status": info.status}
    if info.expiry is not None:
        d["cacheExpiryDateTime"] = timestamp(info.expiry)
    if info.parent is not None:
        d["groupIdToken"] = {"idToken": info.parent, "type": GROUP_TOKEN_TYPE}
    return d


def entries_from_ocpp201(
    local_authorization_list: Sequence[Mapping[str, Any]],
) -> list[tuple[str, IdTagInfo | None]]:
    """The entries of a 2.0.1 SendLocalListRequest localAuthorizationList; ValueError if malformed.

    An entry is keyed by its idToken string alone (its type is not kept), as 1.6 entries are.
    """
    entries: list[tuple[str, IdTagInfo | None]] = []
    parse = _memoized(info_from_ocpp201)
    for item in local_authorization_list:
        if not isinstance(item, Mapping):
            raise ValueError(f"authorization data is not an object: {item!r}")
        token = _field(item, "idToken", "id_token")
        if token is None:
            raise ValueError(f"authorization data without an idToken: {item!r}")
        info = _field(item, "idTokenInfo", "id_token_info")
        entries.append((_token_id(token, "idToken"), parse(info) if info is not None else None))
    return entries


def _token_id(token: Any, name: str) -> str:
    """The identifier string of a 2.0.1 IdTokenType."""
    value = _field(token, "idToken", "id_token") if isinstance(token, Mapping) else None
    if not isinstance(value, str):
        raise ValueError(f"{name} without an idToken string: {token!r}")
    return value
