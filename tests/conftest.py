"""Shared fixtures. The S3 ones run a real HTTP endpoint (moto's server mode) on loopback."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib, which does not put the repository root on sys.path; the tests
# import their helpers as `tests.support.*`.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from pretrain_trainer.storage import StorageOptions  # noqa: E402
from pretrain_trainer.storage.local_s3 import ensure_bucket, start_local_s3  # noqa: E402
from tests.support.s3 import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, FaultyProxy  # noqa: E402


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of an in-memory S3 endpoint on loopback, shared by the whole session."""
    with start_local_s3() as url:
        yield url


@pytest.fixture(scope="session")
def s3(s3_endpoint: str) -> StorageOptions:
    """Explicit options for the local endpoint (for session- and module-scoped data; no environment needed)."""
    return StorageOptions(
        endpoint_url=s3_endpoint,
        region="us-east-1",
        access_key_id=TEST_ACCESS_KEY_ID,
        secret_access_key=TEST_SECRET_ACCESS_KEY,
        backoff_base_s=0.001,
        backoff_max_s=0.01,
    )


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> StorageOptions:
    """Point the AWS environment at the local endpoint; returns matching options with fast backoff."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "PRETRAIN_S3_ADDRESSING_STYLE"):
        monkeypatch.delenv(name, raising=False)
    # Keep a developer's ~/.aws out of the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return StorageOptions.from_env(backoff_base_s=0.001, backoff_max_s=0.01, connect_timeout_s=2.0)


@pytest.fixture
def s3_bucket(s3_env: StorageOptions) -> str:
    """A fresh, uniquely named bucket on the local endpoint, as `s3://name`."""
    return ensure_bucket(f"test-{uuid.uuid4().hex[:16]}", s3_env)


@pytest.fixture
def faulty_s3(s3_endpoint: str) -> Iterator[FaultyProxy]:
    """A started fault-injecting proxy in front of the local endpoint; point clients at `.url`."""
    with FaultyProxy(s3_endpoint) as proxy:
        yield proxy
