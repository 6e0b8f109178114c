"""The one retry policy for object-storage requests.

botocore's own retries are switched off in `s3.py`, so this loop is the single, bounded policy, and it
wraps the whole request *including reading the response body*: botocore's retries end when the headers
arrive, but a connection dropped halfway through a 64 MiB ranged GET must be retried too.
"""

from __future__ import annotations

import http.client
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import botocore.exceptions as bce
import urllib3.exceptions as u3e

from pretrain_trainer.storage.base import StorageError, StorageOptions, StorageUnavailable

log = logging.getLogger("pretrain_trainer.storage")

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
# 429 is not a standard S3 status, but S3-compatible stores and proxies use it for throttling.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "429",
    }
)

# Connection-level faults: the request may not have reached the server, or its response did not fully
# arrive. Every S3 call made through this module is idempotent, so replaying is safe.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    bce.EndpointConnectionError,
    bce.ConnectTimeoutError,
    bce.ProxyConnectionError,
    bce.HTTPClientError,  # ConnectionClosedError, ReadTimeoutError, ResponseStreamingError and kin
    bce.IncompleteReadError,
    bce.FlexibleChecksumError,  # a body that arrived corrupted is worth fetching again
    u3e.ProtocolError,
    u3e.TimeoutError,
    u3e.NewConnectionError,
    http.client.IncompleteRead,
    http.client.RemoteDisconnected,
    ConnectionError,  # the builtin: reset, refused, aborted, broken pipe
    TimeoutError,
    socket.timeout,
)
# A TLS failure is almost always configuration (wrong CA bundle, plain-HTTP port); retrying only delays it.
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (bce.SSLError,)


def client_error_code(exc: BaseException) -> tuple[str, int | None]:
    """`(code, http_status)` of a botocore ClientError; `(class name, None)` for anything else."""
    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(error.get("Code") or status or "Unknown"), status
    return type(exc).__name__, None


def error_label(exc: BaseException) -> str:
    """A short, secret-free description for logs and messages: `SlowDown (HTTP 503)`."""
    code, status = client_error_code(exc)
    return f"{code} (HTTP {status})" if status is not None and code != str(status) else code


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request could succeed."""
    if isinstance(exc, bce.ClientError):
        code, status = client_error_code(exc)
        return code in TRANSIENT_CODES or status in TRANSIENT_STATUS or status == 429
    if isinstance(exc, _PERMANENT_TYPES):
        return False
    return isinstance(exc, _TRANSIENT_TYPES)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff before retry number `attempt` (1 for the first retry).

    Full jitter (uniform in [0, ceiling]) spreads out the many loader threads that hit the same
    throttled prefix at the same moment, instead of having them retry in lockstep.
    """
    ceiling = min(max_s, base_s * (2 ** (attempt - 1)))
    return (rng or random).uniform(0.0, ceiling)


def call_with_retry(
    op: Callable[[], T],
    *,
    uri: str,
    action: str,
    options: StorageOptions,
    translate: Callable[[Exception], StorageError | None],
    unavailable_hint: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `op` until it succeeds, a permanent error occurs, or the retry budget is spent: `options.retry_timeout_s`
    seconds since the first attempt (and `options.max_attempts`, when set).

    `translate` turns a permanent error into the StorageError to raise (None re-raises the original:
    a bug in our code must not be disguised as a storage problem). Once the budget is spent on a transient
    fault, StorageUnavailable names `uri`, `action`, the attempts, the time spent, the last error and
    `unavailable_hint`. The last backoff is shortened to end at the deadline, so the whole budget is used.
    """
    started = clock()
    attempt = 1
    while True:
        try:
            return op()
        except Exception as exc:
            if not is_transient(exc):
                translated = translate(exc)
                if translated is None:
                    raise
                raise translated from exc
            label = error_label(exc)
            remaining = options.retry_timeout_s - (clock() - started)
            if remaining <= 0 or (options.max_attempts is not None and attempt >= options.max_attempts):
                raise StorageUnavailable(
                    uri,
                    f"{action} still failing after {attempt} attempt(s) in {clock() - started:.1f} s; last error: "
                    f"{label}. {unavailable_hint}",
                ) from exc
            delay = min(remaining, backoff_delay(attempt, options.backoff_base_s, options.backoff_max_s))
            # One quiet line per retry; the full error (which can quote request details) stays out of
            # the log and reaches the caller only if every attempt fails.
            log.warning(
                "storage retry uri=%s action=%s attempt=%d error=%s delay_s=%.3f budget_left_s=%.1f",
                uri,
                action,
                attempt,
                label,
                delay,
                remaining,
                extra={"storage_uri": uri, "storage_attempt": attempt, "storage_error_code": label},
            )
            sleep(delay)
            attempt += 1
