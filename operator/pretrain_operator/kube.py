"""A small async Kubernetes API client for the few calls the operator makes, over kopf's own credentials.

kopf talks to the API server with aiohttp and a `kopf.ConnectionInfo` (in-cluster service account or
kubeconfig); this client uses the same connection info, so the operator has one login and no second client
library (the official `kubernetes` package pins a python-dateutil that boto3's botocore refuses).

    kube = KubeClient(info)
    pods = await kube.list(PODS, "ns", label_selector="a=b")
    await kube.create(PODS, "ns", manifest)             # AlreadyExists is not an error (idempotent)
    await kube.patch(JOBS, "ns", "name", {"status": {...}}, subresource="status")
    await kube.delete(PODS, "ns", "name")               # NotFound is not an error
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kopf

from pretrain_trainer.contract import API_GROUP, PLURAL, VERSION


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        root = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        parts = (
            [root, *(["namespaces", namespace] if namespace else []), self.plural]
            + ([name] if name else [])
            + ([subresource] if subresource else [])
        )
        return "/".join(p for p in parts if p)


PODS = Resource("", "v1", "pods")
SERVICES = Resource("", "v1", "services")
CONFIG_MAPS = Resource("", "v1", "configmaps")
JOBS = Resource(API_GROUP, VERSION, PLURAL)
NODES = Resource("", "v1", "nodes")  # cluster-scoped: namespace ""


class ApiError(Exception):
    """A non-success answer of the API server."""

    def __init__(self, status: int, reason: str, message: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message

    @property
    def transient(self) -> bool:
        """Worth retrying: the server is busy, restarting, or the object changed under us."""
        return self.status in (409, 429) or self.status >= 500


def _ssl_context(info: kopf.ConnectionInfo, files: list[Path]) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    ctx = ssl.create_default_context(
        cafile=str(info.ca_path) if info.ca_path else None,
        cadata=_text(info.ca_data) if info.ca_data else None,
    )
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data:
        cert = _temp_file(info.certificate_data, files)
    if info.private_key_data:
        key = _temp_file(info.private_key_data, files)
    if cert:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


def _text(data: str | bytes) -> str:
    raw = data if isinstance(data, bytes) else data.encode()
    if b"-----BEGIN" not in raw:  # kubeconfig's *-data fields are base64
        raw = base64.b64decode(raw)
    return raw.decode()


def _temp_file(data: str | bytes, files: list[Path]) -> Path:
    # ssl can load client certificates only from files; they live as long as the client.
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(_text(data))
    files.append(Path(f.name))
    return Path(f.name)


class KubeClient:
    """Namespaced CRUD over one aiohttp session; re-logs in once on 401 (rotated service-account tokens)."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        relogin: Callable[[], Awaitable[kopf.ConnectionInfo | None]] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._relogin = relogin
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._files: list[Path] = []
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._use(info)

    def _use(self, info: kopf.ConnectionInfo) -> None:
        self._info = info
        self._server = info.server.rstrip("/")
        self._ssl = _ssl_context(info, self._files)
        headers = {"Accept": "application/json", "User-Agent": "pretrain-operator"}
        if info.token:
            headers["Authorization"] = f"Bearer {info.token}"
        elif info.username:
            raw = f"{info.username}:{info.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        self._headers = headers

    async def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        for f in self._files:
            f.unlink(missing_ok=True)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        ok_statuses: tuple[int, ...] = (),
    ) -> dict[str, Any] | None:
        """The decoded answer; None for a status in `ok_statuses` (e.g. 404 on delete); ApiError otherwise."""
        for attempt in range(2):
            session = await self._session_()
            headers = dict(self._headers)
            if body is not None:
                headers["Content-Type"] = content_type
            async with session.request(
                method, self._server + path, params=params, json=body, headers=headers, ssl=self._ssl
            ) as resp:
                if resp.status == 401 and attempt == 0 and self._relogin is not None:
                    async with self._lock:
                        info = await self._relogin()
                        if info is not None:
                            self._use(info)
                    continue
                if resp.status in ok_statuses:
                    return None
                payload = await resp.json(content_type=None) if resp.content_length != 0 else {}
                if resp.status >= 400:
                    payload = payload if isinstance(payload, dict) else {}
                    raise ApiError(resp.status, payload.get("reason", ""), payload.get("message", ""), method, path)
                return payload
        raise ApiError(401, "Unauthorized", "the API server refused the credentials twice", method, path)

    async def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.request("GET", res.path(namespace, name), ok_statuses=(404,))

    async def list(self, res: Resource, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        answer = await self.request("GET", res.path(namespace), params=params) or {}
        return list(answer.get("items") or [])

    async def create(self, res: Resource, namespace: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create; None when it already exists (a retried reconcile)."""
        return await self.request("POST", res.path(namespace), body=manifest, ok_statuses=(409,))

    async def patch(
        self, res: Resource, namespace: str, name: str, patch: dict[str, Any], subresource: str | None = None
    ) -> dict[str, Any] | None:
        """JSON merge patch (RFC 7386: None deletes a key); None when the object is gone."""
        return await self.request(
            "PATCH",
            res.path(namespace, name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
            ok_statuses=(404,),
        )

    async def delete(self, res: Resource, namespace: str, name: str) -> None:
        """Delete with the object's own grace period (pods get SIGTERM and time to checkpoint)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        await self.request("DELETE", res.path(namespace, name), body=body, ok_statuses=(404,))


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns `old` into `new` (empty when they are equal)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif before != value or key not in old:
            patch[key] = value
    return patch
