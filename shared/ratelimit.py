"""Redis-backed rate limits (the ``limits`` package) that answer 429 with ``Retry-After``."""

import math
import time

from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from shared.errors import RateLimited


class RedisRateLimit:
    """One limit (e.g. ``5 per 900 s``) applied per key. ``exact`` uses a moving window (one
    Redis entry per hit, for small budgets); otherwise a cheaper sliding-window counter."""

    def __init__(self, redis_url: str, item: RateLimitItem, *, exact: bool = False) -> None:
        storage = RedisStorage(f"async+{redis_url}", implementation="redispy")
        strategy = MovingWindowRateLimiter if exact else SlidingWindowCounterRateLimiter
        self._limiter = strategy(storage)
        self._item = item

    async def hit(self, *key: str) -> bool:
        """Spend one unit; False when the budget was already used up."""
        return await self._limiter.hit(self._item, *key)

    async def allows(self, *key: str) -> bool:
        """Whether one more unit fits, without spending it."""
        return await self._limiter.test(self._item, *key)

    async def clear(self, *key: str) -> None:
        await self._limiter.clear(self._item, *key)

    async def rejection(self, code: str, message: str, *key: str) -> RateLimited:
        """The 429 to raise, with the seconds until the window lets the next unit through."""
        stats = await self._limiter.get_window_stats(self._item, *key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimited(message, code=code, retry_after=retry_after)
