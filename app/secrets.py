"""Secrets at rest: AES-256-GCM with keys from ``TEAMCART_SECRETS_KEY``, rotation included.

Why: a store's own Stripe secret key and webhook secret live in the database (the shop
keeps each payment method's keys per store). A database dump, a backup or a read replica
must not hand them out, so every such value is sealed before it is written and opened only
where it is used (verifying a store's webhook), never to be answered by a route.

A sealed value is one text token, ``tcs1.<key id>.<nonce>.<ciphertext>`` (base64url, no
padding): a fresh random 96-bit nonce for every seal, the 128-bit tag at the end of the
ciphertext, and the id of the key that sealed it (the first 8 hex digits of the key's
SHA-256), so a reader knows which key to try first and ``teamcart secrets rotate`` knows
what is not under the newest key yet. The associated data names where the value lives
(``context``, e.g. the table, the store and the field): a ciphertext copied into another
store's row, or into the other field, does not open.

Keys: ``TEAMCART_SECRETS_KEY`` is one or more base64url-encoded 32-byte keys, comma-separated.
New seals use the first; opening tries the key named in the token, then every other one
(rotation: put the new key first, keep the old ones until ``teamcart secrets rotate`` has
re-sealed everything under the new one). With none configured, a key is generated once and
kept in the data folder (``secrets-key``, mode 0600), as the JWT secret is: the embedded
default needs no configuration, and its data survives restarts.

Exceptions: ``SecretsError`` (a token that can't be opened with any key: tampered, another
context, or its key removed too soon) — never the plaintext, never the key, in any message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN_VERSION: Final = "tcs1"  # noqa: S105 - a format tag, not a secret
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+={0,2}")
KEY_FILE: Final = "secrets-key"
"""Where the generated key is kept, under the data folder, when none is configured."""


class SecretsError(Exception):
    """A sealed value could not be opened (or a key could not be read)."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key() -> str:
    """A new key as ``TEAMCART_SECRETS_KEY`` takes it (base64url of 32 random bytes)."""
    return _b64encode(secrets.token_bytes(KEY_BYTES))


def decode_key(text: str) -> bytes:
    """The 32 bytes of a configured key; ``ValueError`` saying why not (never the key)."""
    text = text.strip()
    if not _BASE64URL.fullmatch(text):
        raise ValueError("a key is not base64url text")
    try:
        raw = _b64decode(text)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a key is not base64url text") from exc
    if len(raw) != KEY_BYTES:
        raise ValueError(
            f"each key must be {KEY_BYTES} bytes, base64url-encoded "
            f"(`python -c 'import app.secrets as s; print(s.generate_key())'`)"
        )
    return raw


def key_id(key: bytes) -> str:
    """The id a token names its key by: not secret (32 bits of a hash of 256 random bits)."""
    return hashlib.sha256(key).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Keyring:
    """The keys in order: the first seals, any of them opens."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a keyring needs at least one key")
        if any(len(key) != KEY_BYTES for key in self.keys):
            raise ValueError(f"every key must be {KEY_BYTES} bytes")

    @classmethod
    def of(cls, encoded: Sequence[str]) -> Keyring:
        return cls(tuple(decode_key(text) for text in encoded))

    @property
    def primary_id(self) -> str:
        return key_id(self.keys[0])

    def seal(self, plaintext: str, *, context: str) -> str:
        """``plaintext`` sealed under the first key, bound to ``context``."""
        key = self.keys[0]
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
        return ".".join((TOKEN_VERSION, key_id(key), _b64encode(nonce), _b64encode(sealed)))

    def open(self, token: str, *, context: str) -> str:
        """The plaintext of a token sealed for ``context`` by any of the keys."""
        version, kid, nonce, sealed = _parts(token)
        if version != TOKEN_VERSION:
            raise SecretsError(f"not a sealed value of this server (version {version!r})")
        named = [key for key in self.keys if key_id(key) == kid]
        others = [key for key in self.keys if key_id(key) != kid]
        for key in (*named, *others):
            try:
                plain = AESGCM(key).decrypt(nonce, sealed, context.encode())
            except InvalidTag:
                continue
            return plain.decode()
        raise SecretsError(
            f"no configured key opens this value (sealed with key {kid}); "
            "was that key removed from TEAMCART_SECRETS_KEY before `teamcart secrets rotate`?"
        )

    def is_current(self, token: str) -> bool:
        """Whether the token is sealed under the first key (rotation leaves it as it is)."""
        return _parts(token)[1] == self.primary_id


def _parts(token: str) -> tuple[str, str, bytes, bytes]:
    pieces = token.split(".")
    if len(pieces) != 4:
        raise SecretsError("a sealed value has four parts")
    try:
        nonce, sealed = _b64decode(pieces[2]), _b64decode(pieces[3])
    except (binascii.Error, ValueError) as exc:
        raise SecretsError("a sealed value is not base64url") from exc
    if len(nonce) != NONCE_BYTES:
        raise SecretsError("a sealed value's nonce is not 96 bits")
    return pieces[0], pieces[1], nonce, sealed


def keyring_for(configured: Sequence[str], data_dir: Path) -> Keyring:
    """The configured keys (``Settings.secrets_keys``), else the data folder's own key,
    generated the first time: written whole to a file of its own, then linked into place
    (which fails if the name exists), so two workers starting together agree on one key
    and neither ever reads a half-written one."""
    if configured:
        return Keyring.of(configured)
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(generate_key())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it just now: theirs counts
        finally:
            draft.unlink()
    try:
        return Keyring.of([path.read_text().strip()])
    except ValueError as exc:
        raise SecretsError(f"{path} does not hold a usable key: {exc}") from exc
