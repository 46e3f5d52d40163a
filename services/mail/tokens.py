"""Access tokens of connected accounts: decrypted when used, refreshed before expiry or after a
401, and refreshed once per account however many jobs ask at the same time.

The lock is in Redis, so it holds across worker processes and the API (attachment downloads).
Whoever gets it re-reads the account: if another job refreshed meanwhile, its token is used
and Google sees one refresh. ``invalid_grant`` marks the account ``needs_reauth``.
"""

import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.mail.crypto import TokenCipher
from services.mail.google import GmailSession, Google, InvalidGrant, Tokens
from services.mail.models import AccountStatus, EmailAccount
from shared.db import transaction
from shared.models import utcnow

LOCK_SECONDS = 30


class AccountGone(Exception):
    """The account was disconnected while a job was using it."""


@dataclass
class AccountTokens:
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    cipher: TokenCipher
    google: Google

    async def access_token(self, owner_id: uuid.UUID, account_id: uuid.UUID) -> str:
        """A valid access token: the stored one, or a fresh one if it expires soon."""
        account = await self._account(owner_id, account_id)
        if account.token_expires_at > utcnow():
            return self.cipher.decrypt(account.access_token)
        return await self.refresh(owner_id, account_id, rejected=None)

    async def gmail(self, owner_id: uuid.UUID, account_id: uuid.UUID) -> GmailSession:
        """A Gmail session for the account that gets a new token (once) when Google refuses its own."""

        async def refresh(rejected: str) -> str:
            return await self.refresh(owner_id, account_id, rejected)

        return self.google.session(await self.access_token(owner_id, account_id), refresh)

    async def refresh(self, owner_id: uuid.UUID, account_id: uuid.UUID, rejected: str | None) -> str:
        """A new access token, unless the stored one is already newer than ``rejected`` (the
        one Google refused, or None when it merely expired)."""
        async with self.redis.lock(
            f"pai:mail:token-refresh:{account_id}", timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS
        ):
            account = await self._account(owner_id, account_id)
            current = self.cipher.decrypt(account.access_token)
            if current != rejected and account.token_expires_at > utcnow():
                return current  # someone refreshed while we waited for the lock
            if account.refresh_token is None:
                await self.mark_needs_reauth(owner_id, account_id, "no refresh token was granted")
                raise InvalidGrant(400, "no refresh token")
            try:
                tokens = await self.google.refresh(self.cipher.decrypt(account.refresh_token))
            except InvalidGrant:
                await self.mark_needs_reauth(owner_id, account_id, "Google access was revoked or expired")
                raise
            await self.save(owner_id, account_id, tokens)
            return tokens.access_token

    async def save(self, owner_id: uuid.UUID, account_id: uuid.UUID, tokens: Tokens) -> None:
        async with transaction(self.sessions, owner_id) as tx:
            account = await tx.session.get(EmailAccount, account_id)
            if account is None:
                raise AccountGone(str(account_id))
            self.store_tokens(account, tokens)

    def store_tokens(self, account: EmailAccount, tokens: Tokens) -> None:
        account.access_token = self.cipher.encrypt(tokens.access_token)
        if tokens.refresh_token:
            account.refresh_token = self.cipher.encrypt(tokens.refresh_token)
        elif account.refresh_token:  # a refresh answer carries none: keep ours, under the current key
            account.refresh_token = self.cipher.rotate(account.refresh_token)
        account.token_expires_at = tokens.expires_at
        account.scopes = tokens.scopes or account.scopes
        account.updated_at = utcnow()

    async def mark_needs_reauth(self, owner_id: uuid.UUID, account_id: uuid.UUID, reason: str) -> None:
        async with transaction(self.sessions, owner_id) as tx:
            account = await tx.session.get(EmailAccount, account_id)
            if account is not None:
                account.status, account.last_error = AccountStatus.NEEDS_REAUTH, reason
                account.updated_at = utcnow()

    async def _account(self, owner_id: uuid.UUID, account_id: uuid.UUID) -> EmailAccount:
        async with transaction(self.sessions, owner_id) as tx:
            account = await tx.session.get(EmailAccount, account_id)
            if account is None:
                raise AccountGone(str(account_id))
            return account
