"""Redis clients: one for plain commands and the ARQ pool for enqueuing jobs."""

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True, health_check_interval=30)


def arq_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


async def create_arq_pool(url: str) -> ArqRedis:
    return await create_pool(arq_settings(url))
