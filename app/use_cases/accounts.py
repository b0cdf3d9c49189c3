"""Accounts: sign up with an email and a password, sign in with them later (API.md § Accounts
and roles).

An account is a user whose row has a password hash (``app.persistence.accounts``); a guest
stays what it was, a token and a row without one. Signing in answers a token exactly like a
guest's, so nothing downstream tells the two apart.

The handlers are plain ``(command, accounts)`` functions like every other handler, over
:class:`Accounts` (the rows, the hasher and the sign-in limits) instead of a unit of work: an
account is one row written in one statement, with nothing to load, version or publish.

What the sign-in guards against, and how:

- guessing a password: every attempt is counted against its email before the password is
  checked (:class:`SignInLimits`, 10 failures a minute), so guesses sent in parallel can't
  slip in between a check and a count; a sign-in that succeeds clears its email's count,
  so only failures add up;
- learning which emails have accounts: an unknown email is verified against a dummy hash
  (as slow as a real one) and gets the same 401 as a wrong password; the limits count
  unknown emails exactly like known ones, so a 429 says nothing either;
- slow hashing stalling everyone: Argon2id runs in a thread, a few at a time
  (:class:`Passwords`), so the event loop keeps serving while a hash is computed.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Final, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter

from app.failures import ApplicationError, ConflictError
from app.persistence.accounts import StoredAccount

FAILED_SIGN_INS_PER_EMAIL: Final = 10
"""Failed sign-ins one email may have in any minute (API.md)."""

MAX_HASHES_AT_ONCE: Final = 2
"""Argon2id hashes one process computes at the same time. Each takes 64 MiB and a core for
a few hundred milliseconds (argon2-cffi's defaults on two cores), so more at once would only
share the same cores while holding more memory; the rest wait their turn."""


DUMMY_HASH: Final = (
    "$argon2id$v=19$m=65536,t=3,p=4$TpLwvlhIqgBCSDjGS5xQbA"
    "$drccTto/59XmZJ+c3MAn4bX4/zyI7K3kfoYuzWZ+N10"
)
"""What an unknown email's password is checked against: the hash, with argon2-cffi's default
parameters, of a random password nobody kept. Shipped rather than computed, so that even the
first unknown email a process sees takes no longer than a wrong password."""


class BadCredentialsError(ApplicationError):
    """401 ``bad_credentials``: no account has this email, or the password is not its."""

    status = 401

    def __init__(self) -> None:
        super().__init__("bad_credentials", "the email or the password is wrong")


class SignInsLimitedError(ApplicationError):
    """429: too many sign-ins from the address, or failed ones for the email, this minute.
    ``retry_after``: whole seconds until one more would be counted."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("rate_limited", "too many sign-in attempts; try again later")
        self.retry_after = retry_after


def email_taken() -> ConflictError:
    return ConflictError("email_taken", "an account with this email exists already")


class AccountRows(Protocol):
    """Where accounts are kept (``app.persistence.accounts.SqlAccounts``; a fake in tests)."""

    async def add(self, *, user_id: str, display_name: str, email: str, password_hash: str) -> bool:
        """A new account; ``False`` when an account has this email already (in any case)."""

    async def by_email(self, email: str) -> StoredAccount | None:
        """The account with this email, compared without regard to case."""

    async def replace_hash(self, user_id: str, *, old: str, new: str) -> None:
        """The account's hash becomes ``new`` if it is still ``old``."""


class Passwords:
    """Argon2id password hashes (argon2-cffi's ``PasswordHasher``), off the event loop.

    The default hasher is argon2-cffi's own defaults, RFC 9106's low-memory profile
    (Argon2id, 3 passes over 64 MiB, 4 lanes); a hash stored with other parameters is
    replaced on the next sign-in (:meth:`needs_rehash`). Passwords are NFKC-normalised
    first (NIST SP 800-63B), so the same password typed on another keyboard, composed or
    decomposed, is still the same password.
    """

    def __init__(
        self, hasher: PasswordHasher | None = None, *, at_once: int = MAX_HASHES_AT_ONCE
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._turns = asyncio.Semaphore(at_once)
        # Another hasher's parameters need a dummy of their own, made at first need.
        self._dummy_hash = None if self.needs_rehash(DUMMY_HASH) else DUMMY_HASH

    async def hash(self, password: str) -> str:
        async with self._turns:
            return await asyncio.to_thread(self._hasher.hash, _normalised(password))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` is the one ``password_hash`` was made from. ``None`` (no such
        account) is checked against a dummy hash of this hasher's parameters: False, after
        as long as a real check takes."""
        if password_hash is None:
            password_hash = await self._dummy()
        async with self._turns:
            return await asyncio.to_thread(self._matches, password_hash, _normalised(password))

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than this hasher's."""
        return self._hasher.check_needs_rehash(password_hash)

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        return self._dummy_hash


def _normalised(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


class SignInLimits:
    """How many sign-ins an address, and failed ones an email, may make in any minute.

    The ``limits`` package's moving window (each attempt a time stamp in a list, Redis's
    Lua scripts keeping it) over the storage given: Redis, so every server process counts
    the same attempts, or its memory storage in tests. An email is counted by its SHA-256
    digest (trimmed, lower-cased), so no address is written to Redis. ``per_address`` 0
    leaves addresses unlimited (the tests' app; ``TEAMCART_RATE_LIMIT_PER_MINUTE``).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        per_address: int,
        failures_per_email: int = FAILED_SIGN_INS_PER_EMAIL,
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._per_address = (
            RateLimitItemPerMinute(per_address, namespace="sign_ins_by_address")
            if per_address > 0
            else None
        )
        self._per_email = RateLimitItemPerMinute(
            failures_per_email, namespace="failed_sign_ins_by_email"
        )

    async def count(self, address: str, email: str) -> None:
        """Count one sign-in against the address and (until :meth:`forgive`) the email;
        :class:`SignInsLimitedError` when either has none left, counting nothing for the
        email if the address had none."""
        if self._per_address is not None:
            await self._hit(self._per_address, address)
        await self._hit(self._per_email, _email_key(email))

    async def forgive(self, email: str) -> None:
        """The email's password was right: what was counted against it is cleared."""
        await self._limiter.clear(self._per_email, _email_key(email))

    async def _hit(self, item: RateLimitItem, key: str) -> None:
        if await self._limiter.hit(item, key):
            return
        stats = await self._limiter.get_window_stats(item, key)
        raise SignInsLimitedError(max(1, math.ceil(stats.reset_time - time.time())))


def _email_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Accounts:
    """What the account handlers work with, built once per app (``app.wiring``)."""

    rows: AccountRows
    passwords: Passwords
    limits: SignInLimits


@dataclass(frozen=True, slots=True)
class Account:
    """Who signed up or in (never the hash)."""

    user_id: str
    email: str
    display_name: str


@dataclass(frozen=True, slots=True)
class CreateAccount:
    """Already checked by the route: a plausible email (trimmed), a name, a password of an
    allowed length."""

    email: str
    password: str
    display_name: str


async def create_account(command: CreateAccount, accounts: Accounts) -> Account:
    """A new account with the password's hash; ``email_taken`` (409) if an account has the
    email already, in any case."""
    user_id = str(uuid.uuid4())
    added = await accounts.rows.add(
        user_id=user_id,
        display_name=command.display_name,
        email=command.email,
        password_hash=await accounts.passwords.hash(command.password),
    )
    if not added:
        raise email_taken()
    return Account(user_id=user_id, email=command.email, display_name=command.display_name)


@dataclass(frozen=True, slots=True)
class SignIn:
    email: str
    password: str
    address: str
    """The client's address, which the sign-in limits count."""


async def sign_in(command: SignIn, accounts: Accounts) -> Account:
    """The account whose email and password these are: 429 once the address or the email is
    out of attempts (before the password is looked at, so even the right one), else 401
    ``bad_credentials`` for an unknown email or a wrong password alike."""
    email = command.email.strip()
    await accounts.limits.count(command.address, email)
    stored = await accounts.rows.by_email(email)
    password_hash = stored.password_hash if stored is not None else None
    if not await accounts.passwords.verify(password_hash, command.password) or stored is None:
        raise BadCredentialsError()
    await accounts.limits.forgive(email)
    if accounts.passwords.needs_rehash(stored.password_hash):
        new_hash = await accounts.passwords.hash(command.password)
        await accounts.rows.replace_hash(stored.user_id, old=stored.password_hash, new=new_hash)
    return Account(user_id=stored.user_id, email=stored.email, display_name=stored.display_name)
