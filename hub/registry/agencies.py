"""The hub's registry of agencies: who each agency is, who administers its data and who reviews its entries.

Records are event-sourced in the hub's store (log ``agency_registry``):
every add or update stores the whole new record as version N+1 of the
agency's aggregate and is audited.  Reads fold in what the log gained since
the last read, so several processes may share the store.

While no agency is registered the registry is not in force: the hub then
behaves as it did without one (hub administrators review catalog entries and
provider codes are only checked for form).  Once one agency is registered,
only registered agencies may submit entries, an entry's ``provider_uscc``
must be its agency's registered code, and only the agency's designated
reviewers review its entries (Arts. 10, 19, 21).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from eventsourcing.persistence import IntegrityError, StoredEvent

from exchange.contracts.agency import InvalidAgency, check_agency
from exchange.contracts.errors import ExchangeError
from exchange.contracts.identifiers import is_valid_uscc
from exchange.contracts.text import excerpt

LOG = "agency_registry"
TOPIC = "exchange.registry:AgencySaved"
_NAMESPACE = uuid.UUID("5d0f3b8e-2c57-4f0e-9a43-8b1e6c2d7a10")
PERSON = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # certificate names (exchange ca issue)
TEXT_LIMITS = {"name": 200, "district": 64}
MAX_PEOPLE = 100
READ_BATCH = 1000


class RegistryError(ValueError, ExchangeError):
    """A registry record or change that cannot be accepted; the message names the field and the rule."""


class NotRegistered(RegistryError):
    """The agency named is not in the registry."""


def record_id(agency: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, agency)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Registry:
    """Agency records over the hub's store (``store.log``); ``audit`` records every change."""

    def __init__(self, store: Any, audit: Any = None, clock: Callable[[], datetime] = utcnow):
        self.log = store.log(LOG)
        self.audit = audit
        self.clock = clock
        self._lock = threading.RLock()
        self._records: dict[str, dict[str, Any]] = {}
        self._head = 0

    # Commands (hub administrators; the caller checked the role).

    def save(self, record: dict[str, Any], actor: str, *, create: bool) -> dict[str, Any]:
        """Register (``create``) or update an agency; the stored record.

        An update given ``version`` (non-zero) is refused when the record
        changed since that version."""
        clean = self._check(record)
        agency = clean["agency"]
        with self._lock:
            self._catch_up()
            current = self._records.get(agency)
            if create and current is not None:
                raise RegistryError(f"agency {agency} is already registered; use update to change it")
            if not create and current is None:
                raise NotRegistered(f"agency {agency} is not registered; use add to register it")
            expected = int(record.get("version") or 0)
            if current is not None and expected and expected != current["version"]:
                raise RegistryError(f"agency {agency} changed since version {expected} (now {current['version']}); "
                                    "look at it again and retry")
            self._check_against_others(clean)
            version = (current["version"] if current else 0) + 1
            stored = {**clean, "version": version, "updated_at": self.clock().isoformat(), "updated_by": actor}
            state = json.dumps(stored, sort_keys=True, ensure_ascii=False).encode()
            try:
                self.log.insert_events([StoredEvent(record_id(agency), version, TOPIC, state)])
            except IntegrityError:
                raise RegistryError(f"agency {agency} was changed at the same time by someone else; retry") from None
            self._catch_up()
        if self.audit is not None:
            self.audit.record("registry.add" if create else "registry.update", actor,
                              **{k: v for k, v in stored.items() if k not in ("updated_by", "updated_at")})
        return dict(stored)

    # Queries.

    def get(self, agency: str) -> dict[str, Any] | None:
        with self._lock:
            self._catch_up()
            found = self._records.get(agency)
            return dict(found) if found else None

    def agencies(self) -> list[dict[str, Any]]:
        """Every registered agency, by id."""
        with self._lock:
            self._catch_up()
            return [dict(self._records[a]) for a in sorted(self._records)]

    def in_force(self) -> bool:
        """True once any agency is registered (see the module docstring)."""
        with self._lock:
            self._catch_up()
            return bool(self._records)

    def is_reviewer(self, name: str, agency: str) -> bool:
        """True when ``name`` is one of ``agency``'s designated reviewers."""
        found = self.get(agency)
        return found is not None and name in found["reviewers"]

    def check_entry(self, agency: str, provider_uscc: str) -> None:
        """Refuse a catalog entry of ``agency`` naming ``provider_uscc``, when the registry is in force and
        the agency is not registered or its registered code is another (RegistryError)."""
        if not self.in_force():
            return
        found = self.get(agency)
        if found is None:
            raise NotRegistered(f"agency {agency} is not in the agency registry: a hub administrator registers it "
                                "(exchange registry add) before it compiles catalog entries")
        if provider_uscc != found["uscc"]:
            raise RegistryError(f"provider_uscc {excerpt(provider_uscc)} is not the code of agency {agency}: its "
                                f"registered unified social credit code is {found['uscc']}")

    # Internals.

    def _check(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            agency = check_agency(record.get("agency", ""))
        except InvalidAgency as e:
            raise RegistryError(f"agency: {e}") from None
        uscc = str(record.get("uscc", "")).strip()
        if not is_valid_uscc(uscc):
            raise RegistryError(f"uscc: {excerpt(uscc)} is not an 18-character unified social credit code with a "
                                "valid check character (GB 32100)")
        clean: dict[str, Any] = {"agency": agency, "uscc": uscc}
        for key, limit in TEXT_LIMITS.items():
            value = str(record.get(key, "")).strip()
            if len(value) > limit:
                raise RegistryError(f"{key}: at most {limit} characters, got {len(value)}")
            clean[key] = value
        if not clean["name"]:
            raise RegistryError("name: required (the agency's name)")
        parent = str(record.get("parent", "")).strip()
        if parent:
            try:
                check_agency(parent)
            except InvalidAgency as e:
                raise RegistryError(f"parent: {e}") from None
            if parent == agency:
                raise RegistryError("parent: an agency is not its own parent")
        clean["parent"] = parent
        for key in ("administrators", "reviewers"):
            people = [str(p).strip() for p in record.get(key, [])]
            bad = [p for p in people if not PERSON.match(p)]
            if bad:
                raise RegistryError(f"{key}: {excerpt(bad[0])} is not a certificate name (letters, digits, '.', "
                                    "'_' or '-', at most 64)")
            if len(people) > MAX_PEOPLE or len(set(people)) != len(people):
                raise RegistryError(f"{key}: at most {MAX_PEOPLE} names, each once")
            clean[key] = sorted(people)
        return clean

    def _check_against_others(self, record: dict[str, Any]) -> None:
        """The parent is registered and no cycle forms; a reviewer serves one agency only (called under the lock)."""
        agency, parent = record["agency"], record["parent"]
        seen = {agency}
        while parent:
            above = self._records.get(parent)
            if above is None:
                raise NotRegistered(f"parent: agency {parent} is not registered")
            if parent in seen:
                raise RegistryError(f"parent: {record['parent']} is below {agency} already; agencies form a tree")
            seen.add(parent)
            parent = above["parent"]
        for other in self._records.values():
            if other["agency"] == agency:
                continue
            if other["uscc"] == record["uscc"]:
                raise RegistryError(f"uscc: {record['uscc']} is registered for agency {other['agency']} already")
            shared = sorted(set(other["reviewers"]) & set(record["reviewers"]))
            if shared:
                raise RegistryError(f"reviewers: {', '.join(shared)} already reviews for agency {other['agency']}; "
                                    "a designated reviewer serves one agency")

    def _catch_up(self) -> None:
        while True:
            notifications = self.log.read(self._head, READ_BATCH)
            for n in notifications:
                record = json.loads(n.state)
                self._records[record["agency"]] = record
                self._head = n.id
            if len(notifications) < READ_BATCH:
                return
