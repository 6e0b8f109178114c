"""Fixtures of the integration tests that start trainer processes."""

from __future__ import annotations

import os

import pytest

from tests.support.checkout import checkout_pythonpath
from tests.support.s3 import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY


@pytest.fixture
def child_env(s3, monkeypatch):
    """The credentials a pod would get from its Secret; the endpoint comes from spec.storage."""
    env = {
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_ACCESS_KEY,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "PYTHONPATH": checkout_pythonpath(),
        "PRETRAIN_LOG_LEVEL": "WARNING",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
