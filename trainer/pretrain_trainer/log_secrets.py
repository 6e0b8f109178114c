"""Credentials never reach log output, at any level: every record is scrubbed before a handler writes it.

At DEBUG, botocore logs each request's headers (the SigV4 `Authorization` header, `X-Amz-Security-Token`), and
URLs may carry `user:password@`. `SecretFilter` replaces, in every record a root handler emits:

- the values of the variables in `contract.SECRET_VARIABLES` (the secret key, the session token, the checkpoint
  signing key) wherever they appear, however they got into the message;
- `X-Amz-Security-Token`, `X-Amz-Signature` and `Authorization` header values and URL userinfo by pattern, for
  credentials that do not come from this process's environment.

    configure_logging("DEBUG")   # instead of logging.basicConfig(...)
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

from pretrain_trainer.contract import SECRET_VARIABLES
from pretrain_trainer.errors import redact_url

MASK = "***"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# A secret this short would also match ordinary text; real keys and tokens are far longer.
MIN_SECRET_LENGTH = 8
_PATTERNS = (
    # 'X-Amz-Security-Token': b'…' or X-Amz-Security-Token=… (query strings, header dumps)
    re.compile(r"(?i)(x-amz-(?:security-token|signature|credential)['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,&}]+"),
    # 'Authorization': b'AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…'
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*b?['\"]?)[^'\"}]+"),
    re.compile(r"(?i)(aws_secret_access_key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"),
)


def secret_values(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    return tuple(v for name in SECRET_VARIABLES if len(v := env.get(name, "")) >= MIN_SECRET_LENGTH)


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value, credential header and URL userinfo replaced by `***`."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{MASK}", text)
    return redact_url(text)


class SecretFilter(logging.Filter):
    """Scrubs each record's message (and exception text) in place; never drops a record."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self.secrets = tuple(secrets) if secrets is not None else secret_values()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call (args not matching the format): the handler reports it, unchanged
            return True
        clean = redact_secrets(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text, self.secrets)
        return True


def configure_logging(level: str | int, fmt: str = LOG_FORMAT) -> None:
    """`logging.basicConfig(level, fmt)`, then a `SecretFilter` on every root handler (handler filters see the
    records of every logger; a logger's own filter would miss its children's)."""
    logging.basicConfig(level=level, format=fmt)
    secret_filter = SecretFilter()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(secret_filter)


__all__ = ["SecretFilter", "configure_logging", "redact_secrets", "secret_values"]
