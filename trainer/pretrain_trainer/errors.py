"""The one shape of an error a user can act on: "this URI, this fix".

`StorageError` (storage/base.py) and `CheckpointError` (checkpoint/layout.py) both derive from `UriError`, so a
caller that only reports errors catches one class, and every message reads `"<uri>: <what happened>; <fix>"`
with URL userinfo scrubbed. Torch-free, like the storage layer.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact_url(text: str) -> str:
    """Replace `user:pass@` in every URL inside `text` with `***@`.

    Endpoints are sometimes configured with inline credentials; they must never reach a message or a log.
    """
    return _USERINFO.sub(r"\g<scheme>***@", text)


class UriError(Exception):
    """Something about the object or store at `uri` failed; `detail` says what and how to fix it.

    The arguments stay `(uri, detail)` so the exception survives pickling across processes (DataLoader workers,
    `all_gather_object`); both are scrubbed of URL userinfo.
    """

    def __init__(self, uri: str, detail: str) -> None:
        uri, detail = redact_url(uri), redact_url(detail)
        super().__init__(uri, detail)
        self.uri = uri
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.uri}: {self.detail}"


__all__ = ["UriError", "redact_url"]
