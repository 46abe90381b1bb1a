"""Signed event bundles: the files of the offline exchange (docs/design.md §4).

A bundle holds a run of consecutive events of one agency's notification
log, in the wire form (a ``protos`` EventBatch, which carries ``after``),
zstd-compressed, with a JSON manifest and an Ed25519 signature by the
node's key.  The layout is in docs/bundles.md:

    MAGIC | u32 manifest length | manifest | u64 content length | content
          | u16 signature length | signature

(big-endian lengths).  The signature covers ``SIGNED_PREFIX + manifest``;
the manifest holds the SHA-256 of the content, so it covers that too.

Format 2 is format 1 with the content encrypted to the hub: an ephemeral
X25519 key agreement with the hub's public key, HKDF-SHA256, then
AES-256-GCM over the compressed content (the manifest's ``encryption``
says how; the agency and id range are the associated data).  Bundles
without encryption are still written as format 1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import struct
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

import zstandard
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eventsourcing.persistence import Notification
from google.protobuf.message import DecodeError

from exchange.common.keyfile import write_new_key_file
from exchange.contracts.agency import InvalidAgency, check_agency
from exchange.contracts.errors import ExchangeError
from exchange.transport.wire import to_wire
from protos.exchange.v1 import exchange_pb2 as pb

FORMAT_VERSION = 1
ENCRYPTED_FORMAT_VERSION = 2
ENCRYPTION_SCHEME = "x25519-hkdf-sha256-aes256gcm"
MAGIC = b"EXCHANGE-BUNDLE\n"
SIGNED_PREFIX = b"exchange-bundle-v1\n"
SUFFIX = ".bundle"
_U16, _U32, _U64 = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">Q")
MAX_CONTENT_BYTES = 1 << 30
_MANIFEST_FIELDS = ("format", "agency", "first", "last", "after", "events", "content_sha256", "created", "key_id")


class BundleError(ExchangeError):
    """A bundle that cannot be trusted or read.

    ``reason`` is a short label (for metrics): truncated, malformed, version,
    unknown_signer, wrong_agency, signature, hash, encrypted or content."""

    def __init__(self, path: str | Path, reason: str, detail: str):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"bundle {path}: {detail}")


class SigningKeyError(ValueError, ExchangeError):
    """A signing or trusted key file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds: events ``first``..``last`` of ``agency``'s log, after ``after``."""

    format: int
    agency: str
    first: int
    last: int
    after: int
    events: int
    content_sha256: str
    created: str
    key_id: str
    encryption: dict | None = None  # format 2: scheme, recipient (hub key id), ephemeral key, nonce

    def to_bytes(self) -> bytes:
        fields = asdict(self)
        if self.encryption is None:
            del fields["encryption"]  # format 1 manifests stay exactly as they were
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def bundle_name(agency: str, first: int, last: int) -> str:
    """The file name of a bundle; zero-padded ids so names sort in id order."""
    return f"{agency}-{first:012d}-{last:012d}{SUFFIX}"


def is_bundle_name(name: str) -> bool:
    """True for a complete bundle's name: ``*.bundle`` and not hidden (writers use hidden temp names)."""
    return name.endswith(SUFFIX) and not name.startswith(".")


# Keys.

def key_id(public_key: Ed25519PublicKey | X25519PublicKey) -> str:
    """A short id of a public key: the first 16 hex digits of the SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(path: str | Path, public_path: str | Path) -> Ed25519PublicKey:
    """Create an Ed25519 private key at ``path`` (PEM, mode 0600, never
    overwriting) and its public key at ``public_path``."""
    return _write_key_pair(Ed25519PrivateKey.generate(), path, public_path,
                           "move it away first if you really mean to replace it")


def generate_hub_key(path: str | Path, public_path: str | Path) -> X25519PublicKey:
    """Create the hub's X25519 bundle decryption key at ``path`` (PEM, mode
    0600, never overwriting) and its public key at ``public_path`` (the file
    nodes encrypt to)."""
    return _write_key_pair(X25519PrivateKey.generate(), path, public_path,
                           "bundles encrypted to it need it to be read")


def _write_key_pair(key, path: str | Path, public_path: str | Path, keep_reason: str):
    """Write ``key`` (PEM, mode 0600, never overwriting) and its public key; return the public key."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        write_new_key_file(path, pem)
    except FileExistsError:
        raise SigningKeyError(f"{path}: a key already exists; {keep_reason}") from None
    Path(public_path).write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key.public_key()


def load_hub_private_key(path: str | Path) -> X25519PrivateKey:
    """The hub's X25519 bundle decryption key in the PEM file ``path``."""
    key = _load(path, serialization.load_pem_private_key, password=None)
    if not isinstance(key, X25519PrivateKey):
        raise SigningKeyError(f"{path}: not an X25519 private key (create one with `exchange hub keygen`)")
    return key


def load_hub_public_key(path: str | Path) -> X25519PublicKey:
    """The hub's X25519 public key that nodes encrypt bundles to."""
    key = _load(path, serialization.load_pem_public_key)
    if not isinstance(key, X25519PublicKey):
        raise SigningKeyError(f"{path}: not an X25519 public key (the hub's `exchange hub keygen` writes it)")
    return key


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path``."""
    key = _load(path, serialization.load_pem_private_key, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 private key")
    return key


def load_trusted_keys(paths: Mapping[str, str]) -> dict[str, Ed25519PublicKey]:
    """The public keys trusted for each agency, from ``{agency: PEM path}``."""
    keys = {}
    for agency, path in paths.items():
        check_agency(agency)
        if not isinstance(path, str):
            raise SigningKeyError(f"trusted key of agency {agency}: expected a file path, got {path!r}")
        keys[agency] = load_public_key(path, f"trusted key of agency {agency}")
    return keys


def load_public_key(path: str | Path, what: str) -> Ed25519PublicKey:
    """The Ed25519 public key in the PEM file ``path`` (``what`` names its use in errors)."""
    key = _load(path, serialization.load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path}: not an Ed25519 public key ({what})")
    return key


def _load(path, loader, **kwargs):
    try:
        return loader(Path(path).read_bytes(), **kwargs)
    except OSError as e:
        raise SigningKeyError(f"cannot read key {path}: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"{path}: not a PEM key: {e}") from None


# Writing.

def write_bundle(directory: str | Path, agency: str, notifications: Sequence[Notification], after: int,
                 key: Ed25519PrivateKey, encrypt_to: X25519PublicKey | None = None, *, items: Sequence[str] = (),
                 reached: int = 0, rows: str = "") -> Path:
    """Write the consecutive ``notifications`` (following id ``after``) as a
    signed bundle in ``directory``, its content encrypted to the hub key
    ``encrypt_to`` if given; return its path.  ``items``, ``reached`` and ``rows`` go
    into the content as in a consumer's subscription (hub/consumer_export.py).

    Atomic: written under a hidden temp name, fsynced, then renamed, so a
    reader never sees a partial bundle."""
    if not notifications:
        raise ValueError("a bundle needs at least one event")
    batch = to_wire(notifications, after)
    batch.items[:], batch.reached, batch.rows = items, reached, rows
    content = zstandard.ZstdCompressor().compress(batch.SerializeToString())
    first, last = notifications[0].id, notifications[-1].id
    encryption = None
    if encrypt_to is not None:
        content, encryption = _encrypt(content, encrypt_to, _associated_data(check_agency(agency), first, last, after))
    manifest = Manifest(
        format=ENCRYPTED_FORMAT_VERSION if encryption else FORMAT_VERSION, agency=check_agency(agency), first=first,
        last=last, after=after, events=len(notifications), content_sha256=hashlib.sha256(content).hexdigest(),
        created=datetime.now(timezone.utc).isoformat(), key_id=key_id(key.public_key()), encryption=encryption,
    )
    manifest_bytes = manifest.to_bytes()
    signature = key.sign(SIGNED_PREFIX + manifest_bytes)
    data = b"".join([MAGIC, _U32.pack(len(manifest_bytes)), manifest_bytes, _U64.pack(len(content)), content,
                     _U16.pack(len(signature)), signature])
    path = Path(directory) / bundle_name(agency, manifest.first, manifest.last)
    write_atomically(path, data)
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a hidden temp file, fsync and rename."""
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # makes the rename itself durable
    finally:
        os.close(fd)


# Reading.

def read_manifest(path: str | Path) -> Manifest:
    """The manifest of the bundle at ``path``, NOT verified: for ordering
    bundles before reading them with ``read_bundle``."""
    with open(path, "rb") as f:
        reader = _Reader(path, f.read(len(MAGIC) + _U32.size))
        reader.magic()
        length = reader.unpack(_U32, "manifest length")
        return _parse_manifest(path, _Reader(path, f.read(length)).take(length, "manifest"))


def read_bundle(path: str | Path, trusted_keys: Mapping[str, Ed25519PublicKey],
                decrypt_key: X25519PrivateKey | None = None) -> tuple[Manifest, pb.EventBatch]:
    """The manifest and events of the bundle at ``path``, fully verified:
    format version, signer, signature, content hash, event count and ids;
    an encrypted bundle is decrypted with the hub's ``decrypt_key`` after
    its signature and hash verified.  Raises BundleError naming the file
    and what is wrong."""
    reader = _Reader(path, Path(path).read_bytes())
    reader.magic()
    manifest_bytes = reader.take(reader.unpack(_U32, "manifest length"), "manifest")
    content = reader.take(reader.unpack(_U64, "content length"), "content")
    signature = reader.take(reader.unpack(_U16, "signature length"), "signature")
    reader.end()
    manifest = _parse_manifest(path, manifest_bytes)
    _check_signature(path, manifest, manifest_bytes, signature, trusted_keys)
    if hashlib.sha256(content).hexdigest() != manifest.content_sha256:
        raise BundleError(path, "hash", "content SHA-256 differs from the manifest's: the content was altered")
    if manifest.encryption is not None:
        content = _decrypt(path, manifest, content, decrypt_key)
    batch = _decode(path, content)
    _check_events(path, manifest, batch)
    return manifest, batch


class _Reader:
    """Reads the length-prefixed parts of a bundle, refusing short data."""

    def __init__(self, path, data: bytes):
        self.path, self.data, self.offset = path, data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.offset + n > len(self.data):
            raise BundleError(self.path, "truncated",
                              f"truncated: the {what} needs {n} bytes, only {len(self.data) - self.offset} remain")
        part = self.data[self.offset:self.offset + n]
        self.offset += n
        return part

    def unpack(self, layout: struct.Struct, what: str) -> int:
        return layout.unpack(self.take(layout.size, what))[0]

    def magic(self) -> None:
        head = self.data[:len(MAGIC)]
        if not MAGIC.startswith(head):
            raise BundleError(self.path, "malformed", "not a bundle file (it does not start with the bundle magic)")
        self.take(len(MAGIC), "bundle magic")

    def end(self) -> None:
        if self.offset != len(self.data):
            raise BundleError(self.path, "malformed", f"{len(self.data) - self.offset} unexpected bytes after the signature")


def _parse_manifest(path, data: bytes) -> Manifest:
    try:
        fields = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurdly nested JSON
        raise BundleError(path, "malformed", f"manifest is not JSON: {e}") from None
    if not isinstance(fields, dict):
        raise BundleError(path, "malformed", "manifest is not a JSON object")
    if type(fields.get("format")) is not int or fields["format"] not in (FORMAT_VERSION, ENCRYPTED_FORMAT_VERSION):
        raise BundleError(path, "version", f"format version {fields.get('format')!r} is not supported "
                                           f"(this hub reads versions {FORMAT_VERSION} and {ENCRYPTED_FORMAT_VERSION})")
    expected = _MANIFEST_FIELDS + (("encryption",) if fields["format"] == ENCRYPTED_FORMAT_VERSION else ())
    missing = [name for name in expected if name not in fields]
    if missing or set(fields) - set(expected):
        raise BundleError(path, "malformed", f"manifest fields are wrong: missing {missing}, "
                                             f"unknown {sorted(set(fields) - set(expected))}")
    manifest = Manifest(**fields)
    numbers = (manifest.first, manifest.last, manifest.after, manifest.events)
    if not all(type(n) is int and n >= 0 for n in numbers):  # true and false are ints to Python, not to JSON
        raise BundleError(path, "malformed", "manifest ids and counts must be non-negative integers")
    texts = (manifest.agency, manifest.content_sha256, manifest.created, manifest.key_id)
    if not all(isinstance(text, str) for text in texts):
        raise BundleError(path, "malformed", "manifest agency, content_sha256, created and key_id must be text")
    try:
        check_agency(manifest.agency)
    except InvalidAgency as e:
        raise BundleError(path, "malformed", f"manifest: {e}") from None
    return manifest


def _check_signature(path, manifest: Manifest, manifest_bytes: bytes, signature: bytes,
                     trusted_keys: Mapping[str, Ed25519PublicKey]) -> None:
    trusted = trusted_keys.get(manifest.agency)
    if trusted is None or key_id(trusted) != manifest.key_id:
        owner = next((a for a, k in trusted_keys.items() if key_id(k) == manifest.key_id), None)
        if owner is not None:
            raise BundleError(path, "wrong_agency",
                              f"claims agency {manifest.agency} but is signed with the key of agency {owner}")
        raise BundleError(path, "unknown_signer",
                          f"signer key {manifest.key_id!r} is not trusted for agency {manifest.agency}; "
                          "add the node's public key to [bundles] trusted_keys")
    try:
        trusted.verify(signature, SIGNED_PREFIX + manifest_bytes)
    except InvalidSignature:
        raise BundleError(path, "signature", "the signature does not verify: the manifest or signature was altered") from None


def _decode(path, content: bytes) -> pb.EventBatch:
    batch = pb.EventBatch()
    try:
        declared = zstandard.frame_content_size(content)
        if declared > MAX_CONTENT_BYTES:  # decompress() would allocate what the frame declares
            raise BundleError(path, "content", f"content declares {declared} bytes uncompressed; "
                                               f"a bundle holds at most {MAX_CONTENT_BYTES}")
        batch.ParseFromString(zstandard.ZstdDecompressor().decompress(content))
    except (zstandard.ZstdError, DecodeError) as e:
        raise BundleError(path, "content", f"content cannot be decoded: {e}") from None
    return batch


def _check_events(path, manifest: Manifest, batch: pb.EventBatch) -> None:
    ids = [e.notification_id for e in batch.events]
    problem = None
    if batch.after != manifest.after:
        problem = f"content starts after id {batch.after}, the manifest says {manifest.after}"
    elif len(ids) != manifest.events or not ids:
        problem = f"content holds {len(ids)} events, the manifest says {manifest.events}"
    elif (ids[0], ids[-1]) != (manifest.first, manifest.last):
        problem = f"content holds ids {ids[0]}-{ids[-1]}, the manifest says {manifest.first}-{manifest.last}"
    elif any(b <= a for a, b in zip([manifest.after, *ids], ids)):
        problem = "content notification ids do not increase"
    if problem:
        raise BundleError(path, "content", problem)


# Encryption to the hub (format 2).

def _associated_data(agency: str, first: int, last: int, after: int) -> bytes:
    return f"exchange-bundle-v2\n{agency}\n{first}\n{last}\n{after}".encode()


def _content_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient,
                info=b"exchange-bundle-v2 content key").derive(shared)


def _raw(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _encrypt(content: bytes, hub_key: X25519PublicKey, associated: bytes) -> tuple[bytes, dict]:
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    key = _content_key(ephemeral.exchange(hub_key), ephemeral_raw, _raw(hub_key))
    nonce = os.urandom(12)
    encryption = {"scheme": ENCRYPTION_SCHEME, "recipient": key_id(hub_key),
                  "ephemeral": base64.b64encode(ephemeral_raw).decode(), "nonce": base64.b64encode(nonce).decode()}
    return AESGCM(key).encrypt(nonce, content, associated), encryption


def _decrypt(path, manifest: Manifest, content: bytes, hub_key: X25519PrivateKey | None) -> bytes:
    encryption = manifest.encryption
    if not isinstance(encryption, dict) or encryption.get("scheme") != ENCRYPTION_SCHEME:
        raise BundleError(path, "malformed", f"unknown encryption {encryption!r}; expected scheme {ENCRYPTION_SCHEME}")
    if hub_key is None:
        raise BundleError(path, "encrypted", f"the bundle is encrypted to hub key {encryption.get('recipient')}; "
                                             "set [bundles] decrypt_key to the hub's key")
    if encryption.get("recipient") != key_id(hub_key.public_key()):
        raise BundleError(path, "encrypted", f"the bundle is encrypted to hub key {encryption.get('recipient')}, "
                                             f"not to this hub's key {key_id(hub_key.public_key())}")
    try:
        ephemeral = base64.b64decode(encryption["ephemeral"], validate=True)
        nonce = base64.b64decode(encryption["nonce"], validate=True)
        key = _content_key(hub_key.exchange(X25519PublicKey.from_public_bytes(ephemeral)), ephemeral,
                           _raw(hub_key.public_key()))
        associated = _associated_data(manifest.agency, manifest.first, manifest.last, manifest.after)
        return AESGCM(key).decrypt(nonce, content, associated)
    except (KeyError, TypeError, ValueError, binascii.Error, InvalidTag):
        raise BundleError(path, "content", "the encrypted content does not decrypt with this hub's key") from None
