"""HMAC signatures on checkpoint manifests: with a key, tampering with any file of a checkpoint is detected
before anything of it is read.

The manifest lists every object's size and SHA-256 and carries the trainer state, and downloads are verified
against it; so a valid signature on the manifest covers the whole checkpoint. Whoever can write to the bucket
can rewrite the manifest too, but not sign it without the key, which lives in a Kubernetes Secret
(`spec.checkpoint.signingSecret`) and reaches the trainer as `SIGNING_KEY_ENV`.

With a key, `load()` refuses an unsigned manifest and one whose signature does not match. Without a key,
manifests are neither signed nor checked (resume still never unpickles anything but checkpoint metadata and
plain data, see safe_load.py). Torch-free.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from pretrain_trainer.checkpoint.layout import MANIFEST, CheckpointError
from pretrain_trainer.contract import PRETRAIN_CHECKPOINT_SIGNING_KEY as SIGNING_KEY_ENV

SIGNATURE = "signature"
ALGORITHM = "hmac-sha256"
MIN_KEY_BYTES = 16


class CheckpointTampered(CheckpointError):
    """The manifest's signature is missing or wrong: something under the checkpoint prefix was written by
    someone without the signing key. Not a damaged checkpoint: nothing of it is read."""


def signing_key_from_env(environ: dict[str, str] | None = None) -> bytes | None:
    """The key in `SIGNING_KEY_ENV`, or None when it is unset or empty. ValueError for a key too short to be
    one (a misconfigured Secret must not silently turn signing off or make it guessable)."""
    value = (os.environ if environ is None else environ).get(SIGNING_KEY_ENV, "")
    if not value:
        return None
    key = value.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"{SIGNING_KEY_ENV}: the checkpoint signing key has {len(key)} bytes; use at least {MIN_KEY_BYTES} "
            "random bytes (e.g. `openssl rand -hex 32`)"
        )
    return key


def _digest(manifest: dict[str, Any], key: bytes) -> str:
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def sign(manifest: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The manifest with its signature added."""
    return {**manifest, SIGNATURE: {"algorithm": ALGORITHM, "value": _digest(manifest, key)}}


def verify(uri: str, manifest: dict[str, Any], key: bytes | None) -> None:
    """Raise CheckpointTampered unless `manifest` carries a valid signature by `key` (no-op without a key)."""
    if key is None:
        return
    signature = manifest.get(SIGNATURE)
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
        raise CheckpointTampered(
            uri,
            f"{MANIFEST} is not signed, but this job has a checkpoint signing key ({SIGNING_KEY_ENV}); refusing "
            "to read it. If it was written before signing was enabled, resume it once without the key",
        )
    value = signature.get("value")
    if not isinstance(value, str) or not hmac.compare_digest(value, _digest(manifest, key)):
        raise CheckpointTampered(
            uri,
            f"the signature of {MANIFEST} does not match: the checkpoint was changed by someone without the "
            "signing key (or the key changed); refusing to read it. Investigate who can write to this prefix",
        )


__all__ = ["SIGNING_KEY_ENV", "CheckpointTampered", "sign", "signing_key_from_env", "verify"]
