"""At most N answers being written at once per user, across every assistant process.

A slot is a member of a Redis sorted set per user, scored by when it expires; taking one drops
expired members first (a process that died mid-answer gives its slots back after
``answer_slot_seconds``), all in one Lua script so two processes cannot both take the last.
"""

import time
import uuid

from redis.asyncio import Redis

from shared.errors import RateLimited

_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class AnswerSlots:
    def __init__(self, redis: Redis, limit: int, hold_seconds: int) -> None:
        self._redis = redis
        self._limit = limit
        self._hold = hold_seconds
        self._take = redis.register_script(_TAKE)

    @staticmethod
    def _key(user_id: uuid.UUID) -> str:
        return f"pai:assistant:answering:{user_id}"

    async def take(self, user_id: uuid.UUID, slot: str) -> None:
        """Take a slot or raise 429: the caller already has ``limit`` answers in progress."""
        now = time.time()
        taken = await self._take(
            keys=[self._key(user_id)], args=[now, now + self._hold, self._limit, slot, self._hold + 60]
        )
        if not int(taken):
            raise RateLimited(
                f"At most {self._limit} answers can be written at once; wait for one to finish",
                retry_after=5,
                code="too_many_answers",
            )

    async def give_back(self, user_id: uuid.UUID, slot: str) -> None:
        await self._redis.zrem(self._key(user_id), slot)
