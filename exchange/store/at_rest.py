"""Encryption of event state at rest in node and hub stores.

The store encrypts each event's state (the row images, catalog entries,
share requests, delivery records) as it writes it and decrypts it as it
reads it, in every log of the store: everything above the store (capture,
the shipper, ingest, the catalog and its schema watch, the sharing ledger,
subscribers, replay, bundles) sees plaintext and the database holds only
ciphertext.  Each store has its own key: a node decrypts to ship, the hub
encrypts again with its key.

Sealing is done by the recorders (``CipheredStates``), not by the library's
mapper cipher hook: the hub stores the events nodes send as they arrive,
without a mapper, and the delivery log is written without one too; in the
recorder, no write or read path can miss it.  The cipher is the library's
AES-GCM cipher (256-bit key, random 96-bit nonce per event).  A sealed
state is ``MARK + key id + ciphertext``; the key id (first 8 bytes of the
key's SHA-256) lets a wrong key be named as such rather than reported as
damage.  A store is encrypted entirely or not at all: an unencrypted event
read with a key set, or an encrypted one read without, is an error (except
the one-time sealing of the store's own logs, ``AgencyLogs.log``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence, TypeVar
from uuid import UUID

from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.utils import Environment

from exchange.common.keyfile import write_new_key_file
from exchange.store import StoredNotification, StoreError

log = logging.getLogger(__name__)

MARK = b"\x00xchg-aes1:"
KEY_BYTES = 32
KEY_ENV = "EXCHANGE_STORE_CIPHER_KEY"  # for commands without a config file (exchange replay)
_ID_BYTES = 8
E = TypeVar("E", bound=StoredEvent | StoredNotification)


class CipherError(StoreError):
    """A cipher key that cannot be used, or state that cannot be decrypted."""


class StateCipher:
    """Seals and opens event states with one AES-GCM key."""

    def __init__(self, key: bytes, source: str = "the cipher key"):
        if len(key) != KEY_BYTES:
            raise CipherError(f"{source}: expected {KEY_BYTES} bytes (base64-encoded), got {len(key)}")
        self._cipher = AESCipher(Environment(env={AESCipher.CIPHER_KEY: base64.b64encode(key).decode()}))
        self.key_id = hashlib.sha256(key).digest()[:_ID_BYTES]
        self.source = source

    def __repr__(self) -> str:  # never the key itself
        return f"StateCipher(key id {self.key_id.hex()})"

    def seal(self, state: bytes) -> bytes:
        return MARK + self.key_id + self._cipher.encrypt(state)

    def open(self, state: bytes, where: str) -> bytes:
        """The plaintext of a sealed ``state``; ``where`` names it in errors."""
        if not state.startswith(MARK):
            raise CipherError(f"{where} is not encrypted, but a cipher key is set: this store was written "
                              "without encryption (a store is encrypted entirely or not at all)")
        key_id = state[len(MARK):len(MARK) + _ID_BYTES]
        if key_id != self.key_id:
            raise CipherError(f"{where} was encrypted with key id {key_id.hex()}, but {self.source} has key id "
                              f"{self.key_id.hex()}: wrong key")
        try:
            return self._cipher.decrypt(state[len(MARK) + _ID_BYTES:])
        except ValueError:
            raise CipherError(f"{where} does not decrypt with the right key: the stored state was altered") from None


def seal_events(events: Sequence[E], cipher: StateCipher | None) -> Sequence[E]:
    """The events with their states sealed (unchanged without a cipher)."""
    if cipher is None:
        return events
    return [_with_state(e, cipher.seal(e.state)) for e in events]


def open_events(events: Sequence[E], cipher: StateCipher | None, log_name: str) -> Sequence[E]:
    """The events with their states opened; refuses sealed states without a cipher."""
    if cipher is None:
        for e in events:
            if e.state.startswith(MARK):
                raise CipherError(
                    f"{log_name}: the store is encrypted (key id {e.state[len(MARK):len(MARK) + _ID_BYTES].hex()}): "
                    "set [store] cipher_key_file or cipher_key (exchange replay: --cipher-key-file) to read it")
        return events
    return [_with_state(e, cipher.open(e.state, f"{log_name}: event {getattr(e, 'id', '?')}")) for e in events]


def _with_state(event: E, state: bytes) -> E:
    if type(event) is StoredEvent:  # the common case, made directly: dataclasses.replace costs more than sealing
        return StoredEvent(event.originator_id, event.originator_version, event.topic, state)  # type: ignore[return-value]
    return event._replace(state=state) if isinstance(event, StoredNotification) else replace(event, state=state)


def load_key(path: str | Path) -> StateCipher:
    """The cipher whose key is in the file ``path`` (base64 text)."""
    path = Path(path)
    try:
        text = path.read_text().strip()
    except OSError as e:
        raise CipherError(f"cannot read the store cipher key {path}: {e.strerror}") from None
    if path.stat().st_mode & 0o077:
        log.warning("store cipher key %s can be read by other users; make it mode 0600", path)
    return StateCipher(_decode(text, f"cipher key file {path}"), f"cipher key file {path}")


def _decode(text: str, source: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CipherError(f"{source}: not base64 (create a key with `exchange store keygen`)") from None


def store_cipher(cfg: Any) -> StateCipher | None:
    """The store cipher configured by ``[store] cipher_key_file`` or ``[store] cipher_key``
    (None: the store is not encrypted)."""
    key_file, key = cfg.store.cipher_key_file, cfg.store.cipher_key
    if key_file and key:
        raise CipherError("set only one of [store] cipher_key_file and [store] cipher_key")
    if key_file:
        return load_key(key_file)
    if key:
        return StateCipher(_decode(key, "[store] cipher_key"), "[store] cipher_key")
    return None


def cipher_from(key_file: str | None, environ: dict[str, str] | None = None) -> StateCipher | None:
    """For commands without a config: a key file, else ``EXCHANGE_STORE_CIPHER_KEY``, else None."""
    if key_file:
        return load_key(key_file)
    key = (os.environ if environ is None else environ).get(KEY_ENV, "")
    return StateCipher(_decode(key, KEY_ENV), KEY_ENV) if key else None


def seal_key(cipher: StateCipher | None, key: bytes | None) -> bytes | None:
    """A record key as a node's record-state table holds it: sealed like event states when there is a cipher."""
    return key if cipher is None or key is None else cipher.seal(key)


def open_key(cipher: StateCipher | None, stored: bytes | None, where: str) -> bytes | None:
    """The plaintext of a key ``seal_key`` wrote."""
    if stored is None:
        return None
    stored = bytes(stored)
    return stored if cipher is None else cipher.open(stored, where)


class CipheredStates:
    """Recorder mixin: seals states on every insert and opens them on every select
    (``insert_events``; ``select_events``, ``select_notifications`` and ``read``),
    so no caller sees ciphertext or writes plaintext (``cipher`` None: plaintext).

    The backends add ``_plaintext_states`` and ``_replace_states`` for ``seal_plaintext``.
    ``super()`` is the library recorder the mixin precedes, which the type
    checker cannot see (hence the ``misc`` ignores)."""

    events_table_name: str
    datastore: Any

    def __init__(self, *args: Any, cipher: StateCipher | None, **kwargs: Any):
        self.cipher = cipher
        super().__init__(*args, **kwargs)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        return super().insert_events(seal_events(stored_events, self.cipher), **kwargs)  # type: ignore[misc]

    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]:
        """The record's events (as the library's ``select_events``), states in plaintext."""
        events = super().select_events(originator_id, **kwargs)  # type: ignore[misc]
        return open_events(events, self.cipher, self.events_table_name)

    def select_notifications(self, start: int | None, limit: int, stop: int | None = None,
                             topics: Sequence[str] = (), *, inclusive_of_start: bool = True) -> Sequence[Notification]:
        """Notifications (as the library's ``select_notifications``), states in plaintext."""
        notifications = super().select_notifications(  # type: ignore[misc]
            start, limit, stop, topics, inclusive_of_start=inclusive_of_start)
        return open_events(notifications, self.cipher, self.events_table_name)

    def read(self, after: int, limit: int) -> Sequence[Notification]:
        """Notifications with id > ``after``, oldest first, states in plaintext."""
        return self.select_notifications(after, limit, inclusive_of_start=False)

    def read_stored(self, after: int, limit: int) -> Sequence[StoredNotification]:
        """As ``read``, as tuples (originator ids may stay as the store holds them): for readers that need
        only topics and states, such as replay."""
        return [StoredNotification.of(n) for n in self.read(after, limit)]

    def has_plaintext(self) -> bool:
        """Whether any state in this log is not sealed."""
        with self.datastore.transaction(commit=False) as c:
            return bool(self._plaintext_states(c, 0, 1))

    def seal_plaintext(self, batch: int = 1000) -> int:
        """Seal, in place, every state of this log stored in plaintext; returns how many.

        Each batch commits on its own and only replaces a state that is still
        the plaintext read, so an interrupted or concurrent run is harmless."""
        if self.cipher is None:
            raise CipherError(f"{self.events_table_name}: sealing needs a cipher key")
        sealed, after = 0, 0
        while True:
            with self.datastore.transaction(commit=True) as c:
                rows = self._plaintext_states(c, after, batch)
                self._replace_states(c, [(i, state, self.cipher.seal(state)) for i, state in rows])
            sealed += len(rows)
            if len(rows) < batch:
                return sealed
            after = rows[-1][0]

    def _plaintext_states(self, c: Any, after: int, limit: int) -> list[tuple[int, bytes]]:
        """(notification id, state) of unsealed states with id > ``after``, oldest first."""
        raise NotImplementedError

    def _replace_states(self, c: Any, rows: list[tuple[int, bytes, bytes]]) -> None:
        """Replace each (id, old, new) state that is still ``old``."""
        raise NotImplementedError


def keygen(path: str | Path) -> dict[str, str]:
    """Create a new random key file at ``path`` (mode 0600, never overwriting)."""
    key = os.urandom(KEY_BYTES)
    try:
        write_new_key_file(path, base64.b64encode(key) + b"\n")
    except FileExistsError:
        raise CipherError(f"{path}: a key already exists; a store encrypted with it cannot be read without it") from None
    return {"key_file": str(path), "key_id": StateCipher(key).key_id.hex()}
