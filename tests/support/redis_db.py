"""An empty Redis database for a test: skipped (failed under ATOLL_REQUIRE) when there is none."""

from __future__ import annotations

from collections.abc import Iterator

from tests.requirements import unavailable


def empty_redis(url: str) -> Iterator[str]:
    """Yield ``url`` with its database emptied before and after (a fixture's body), or say why not."""
    try:
        import redis
    except ImportError:
        unavailable("redis", "the redis client is not installed (pip install 'atoll[redis]')")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("redis", f"no Redis server at {url}: {exc}")
    client.flushdb()
    yield url
    client.flushdb()
