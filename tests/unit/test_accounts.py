"""Accounts without I/O: the Argon2id wrapper, the sign-up and sign-in handlers over a fake of
the rows and the ``limits`` package's memory storage, and the rows' contract, which the fake
passes here and ``SqlAccounts`` in ``tests/integration/test_accounts_rows.py``.

Hashes here use a cheap hasher (one pass over 8 KiB) so the suite stays fast; that the
default one is Argon2id with RFC 9106's parameters is checked on the shipped dummy hash.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY
from limits.aio.storage import MemoryStorage

from app.failures import ConflictError
from app.persistence.accounts import StoredAccount
from app.use_cases.accounts import (
    DUMMY_HASH,
    FAILED_SIGN_INS_PER_EMAIL,
    AccountRows,
    Accounts,
    BadCredentialsError,
    CreateAccount,
    Passwords,
    SignIn,
    SignInLimits,
    SignInsLimitedError,
    create_account,
    sign_in,
)

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"


class FakeAccountRows:
    """``AccountRows`` in memory: what ``SqlAccounts`` does, by the same contract."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredAccount] = {}

    async def add(self, *, user_id: str, display_name: str, email: str, password_hash: str) -> bool:
        if await self.by_email(email) is not None:
            return False
        self.rows[user_id] = StoredAccount(user_id, display_name, email, password_hash)
        return True

    async def by_email(self, email: str) -> StoredAccount | None:
        wanted = email.lower()
        return next((row for row in self.rows.values() if row.email.lower() == wanted), None)

    async def replace_hash(self, user_id: str, *, old: str, new: str) -> None:
        row = self.rows.get(user_id)
        if row is not None and row.password_hash == old:
            self.rows[user_id] = replace(row, password_hash=new)


def new_email() -> str:
    return f"ana.{uuid.uuid4().hex[:10]}@example.com"


class AccountRowsContract:
    """What every ``AccountRows`` does; a subclass provides the ``rows`` fixture."""

    async def test_an_account_is_found_by_its_email_in_any_case(self, rows: AccountRows) -> None:
        email, user_id = new_email(), str(uuid.uuid4())
        assert await rows.add(user_id=user_id, display_name="Ana", email=email, password_hash="h")
        found = await rows.by_email(email.upper())
        assert found == StoredAccount(user_id, "Ana", email, "h")

    async def test_an_email_is_taken_once_whatever_its_case(self, rows: AccountRows) -> None:
        email, first = new_email(), str(uuid.uuid4())
        assert await rows.add(user_id=first, display_name="A", email=email, password_hash="h")
        again = await rows.add(
            user_id=str(uuid.uuid4()), display_name="B", email=email.upper(), password_hash="i"
        )
        assert not again
        found = await rows.by_email(email)
        assert found is not None
        assert found.user_id == first

    async def test_an_unknown_email_is_none(self, rows: AccountRows) -> None:
        assert await rows.by_email(new_email()) is None

    async def test_a_hash_is_replaced_only_if_it_is_still_the_old_one(
        self, rows: AccountRows
    ) -> None:
        email, user_id = new_email(), str(uuid.uuid4())
        await rows.add(user_id=user_id, display_name="Ana", email=email, password_hash="old")
        await rows.replace_hash(user_id, old="stale", new="lost")
        await rows.replace_hash(user_id, old="old", new="new")
        found = await rows.by_email(email)
        assert found is not None
        assert found.password_hash == "new"


class TestFakeAccountRows(AccountRowsContract):
    @pytest.fixture
    def rows(self) -> AccountRows:
        return FakeAccountRows()


# --- the hashing wrapper ---------------------------------------------------------------------


def test_the_default_hasher_is_argon2id_with_rfc_9106_parameters() -> None:
    assert extract_parameters(DUMMY_HASH) == RFC_9106_LOW_MEMORY
    assert not Passwords().needs_rehash(DUMMY_HASH)  # so the default hasher's are the same


async def test_a_hash_verifies_its_password_and_no_other() -> None:
    passwords = Passwords(CHEAP)
    password_hash = await passwords.hash(PASSWORD)
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    assert await passwords.verify(password_hash, PASSWORD)
    assert not await passwords.verify(password_hash, PASSWORD + "!")
    assert await passwords.hash(PASSWORD) != password_hash  # a salt of its own each time


async def test_no_account_and_a_broken_hash_verify_nothing() -> None:
    passwords = Passwords(CHEAP)
    assert not await passwords.verify(None, PASSWORD)
    assert not await passwords.verify("not a hash", PASSWORD)
    assert not await Passwords().verify(None, PASSWORD)  # against the shipped dummy


async def test_the_same_password_typed_composed_or_decomposed_is_the_same() -> None:
    passwords = Passwords(CHEAP)
    composed = await passwords.hash("caf\u00e9 au lait")
    assert await passwords.verify(composed, "cafe\u0301 au lait")


def test_a_hash_of_other_parameters_needs_rehashing() -> None:
    assert Passwords().needs_rehash(CHEAP.hash(PASSWORD))
    assert not Passwords(CHEAP).needs_rehash(CHEAP.hash(PASSWORD))


# --- the handlers ----------------------------------------------------------------------------


def accounts(per_address: int = 0) -> Accounts:
    limits = SignInLimits(MemoryStorage(), per_address=per_address)
    return Accounts(rows=FakeAccountRows(), passwords=Passwords(CHEAP), limits=limits)


async def signed_up(book: Accounts, email: str) -> str:
    account = await create_account(CreateAccount(email, PASSWORD, "Ana"), book)
    return account.user_id


def attempt(email: str, password: str = PASSWORD, address: str = "10.0.0.1") -> SignIn:
    return SignIn(email=email, password=password, address=address)


async def test_sign_up_then_sign_in_in_any_case() -> None:
    book, email = accounts(), new_email()
    user_id = await signed_up(book, email)
    account = await sign_in(attempt(f" {email.upper()} "), book)
    assert (account.user_id, account.email, account.display_name) == (user_id, email, "Ana")


async def test_a_taken_email_is_email_taken() -> None:
    book, email = accounts(), new_email()
    await signed_up(book, email)
    with pytest.raises(ConflictError) as refused:
        await create_account(CreateAccount(email.upper(), "other password", "Bo"), book)
    assert refused.value.code == "email_taken"


async def test_a_wrong_password_and_an_unknown_email_are_bad_credentials() -> None:
    book, email = accounts(), new_email()
    await signed_up(book, email)
    for wrong in (attempt(email, "not it"), attempt(new_email())):
        with pytest.raises(BadCredentialsError) as refused:
            await sign_in(wrong, book)
        assert (refused.value.code, refused.value.status) == ("bad_credentials", 401)


async def test_past_ten_failures_even_the_right_password_is_limited() -> None:
    book, email = accounts(), new_email()
    await signed_up(book, email)
    for _ in range(FAILED_SIGN_INS_PER_EMAIL):
        with pytest.raises(BadCredentialsError):
            await sign_in(attempt(email, "not it"), book)
    with pytest.raises(SignInsLimitedError) as limited:
        await sign_in(attempt(email.upper()), book)
    assert 0 < limited.value.retry_after <= 60
    assert (limited.value.code, limited.value.status) == ("rate_limited", 429)


async def test_a_success_forgives_its_emails_failures() -> None:
    book, email = accounts(), new_email()
    await signed_up(book, email)
    for _ in range(FAILED_SIGN_INS_PER_EMAIL - 1):
        with pytest.raises(BadCredentialsError):
            await sign_in(attempt(email, "not it"), book)
    await sign_in(attempt(email), book)
    for _ in range(FAILED_SIGN_INS_PER_EMAIL):
        with pytest.raises(BadCredentialsError):
            await sign_in(attempt(email, "not it"), book)


async def test_an_address_is_limited_whatever_the_emails() -> None:
    book = accounts(per_address=2)
    for _ in range(2):
        with pytest.raises(BadCredentialsError):
            await sign_in(attempt(new_email()), book)
    with pytest.raises(SignInsLimitedError):
        await sign_in(attempt(new_email()), book)
    with pytest.raises(BadCredentialsError):
        await sign_in(attempt(new_email(), address="10.0.0.2"), book)


async def test_an_old_hash_is_replaced_on_sign_in() -> None:
    rows = FakeAccountRows()
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    book = Accounts(rows, Passwords(stronger), SignInLimits(MemoryStorage(), per_address=0))
    email, user_id = new_email(), str(uuid.uuid4())
    old_hash = CHEAP.hash(PASSWORD)
    await rows.add(user_id=user_id, display_name="Ana", email=email, password_hash=old_hash)
    await sign_in(attempt(email), book)
    new_hash = rows.rows[user_id].password_hash
    assert new_hash != old_hash
    assert not stronger.check_needs_rehash(new_hash)
    await sign_in(attempt(email), book)  # and the new one verifies
