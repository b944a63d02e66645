"""What the store raises when Redis fails it. Each class is both the built-in exception
and redis-py's, so code written for either keeps working: stock Feast's Redis store
raises redis-py's exceptions (``except redis.exceptions.ConnectionError``), and this
store raised the built-in ones before these classes (``except ConnectionError``).

Bad configuration stays a ``ValueError`` (pydantic's ``ValidationError`` at load).
"""

from __future__ import annotations

import redis.exceptions


class RedisConnectionError(redis.exceptions.ConnectionError, ConnectionError):
    """Redis could not be reached or the connection was lost, after the retries; also
    a TLS handshake that failed and a cluster or sentinel with no usable node."""


class RedisTimeoutError(redis.exceptions.TimeoutError, TimeoutError):
    """Redis did not answer within ``command_timeout_seconds`` or the connection was not
    made within ``connect_timeout_seconds`` (a host that drops packets)."""


class RedisAuthenticationError(redis.exceptions.AuthenticationError, ConnectionError):
    """Redis refused the credentials (``WRONGPASS``, ``NOAUTH``) or the user lacks a
    permission a command needs (``NOPERM``)."""


class RedisResponseError(redis.exceptions.ResponseError, RuntimeError):
    """Redis answered a command with an error, such as ``WRONGTYPE`` for a key that
    is not a hash."""


class RedisProtocolError(redis.exceptions.InvalidResponse, RuntimeError):
    """Redis' answer was not RESP, or not the reply the command has."""
