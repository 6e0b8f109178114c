"""A Kubernetes API server emulation over HTTP for the operator tests: kmock's emulator plus what kopf, kubectl
and the operator rely on and kmock 0.8 lacks.

Added here: metadata stamping (uid, resourceVersion, generation bumped on spec changes, creationTimestamp),
JSON patches (with `test` ops, as kopf's finalizer patches) and merge patches with RFC 7386 null deletes, PUT,
the status subresource (status-only writes; status ignored on main-resource writes), label selectors on lists
and watches, `kind`/`apiVersion` on lists, and graceful pod deletion (a deleted pod keeps running with a
deletionTimestamp until its kubelet deletes it with grace 0) when a kubelet plays along.

    with ApiServer(graceful_pods=False) as api:     # a thread serving http://127.0.0.1:PORT
        api.create("pretrain-operator.dev/v1alpha1", "pretrainjobs", "default", manifest)
        api.get("v1", "pods", "default", "job-worker-0")
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import kmock
from kmock._internal import enums, rendering

from pretrain_operator.crd import CATEGORIES, SHORT_NAMES
from pretrain_operator.kube import merge_patch
from pretrain_trainer.contract import API_GROUP, KIND, PLURAL, VERSION

RESOURCES: dict[str, kmock.ResourceInfo] = {
    f"{API_GROUP}/{VERSION}/{PLURAL}": kmock.ResourceInfo(
        kind=KIND,
        singular=KIND.lower(),
        namespaced=True,
        shortnames=set(SHORT_NAMES),
        categories=set(CATEGORIES),
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    ),
    "v1/pods": kmock.ResourceInfo(kind="Pod", namespaced=True, subresources={"status"}, verbs={"get", "list"}),
    "v1/services": kmock.ResourceInfo(kind="Service", namespaced=True, verbs={"get", "list"}),
    "v1/configmaps": kmock.ResourceInfo(kind="ConfigMap", namespaced=True, verbs={"get", "list"}),
    "v1/secrets": kmock.ResourceInfo(kind="Secret", namespaced=True, verbs={"get", "list"}),
    "v1/events": kmock.ResourceInfo(kind="Event", namespaced=True, verbs={"get", "list", "create"}),
    "events.k8s.io/v1/events": kmock.ResourceInfo(kind="Event", namespaced=True, verbs={"create"}),
    # kopf waits until discovery lists namespaces and CRDs before it watches anything.
    "v1/namespaces": kmock.ResourceInfo(kind="Namespace", namespaced=False),
    "v1/nodes": kmock.ResourceInfo(kind="Node", namespaced=False),
    "apiextensions.k8s.io/v1/customresourcedefinitions": kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False
    ),
}
for info in RESOURCES.values():
    info.verbs.update({"get", "list", "watch", "create", "update", "patch", "delete"})


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("==" if "==" in term else "=", 1)
            if labels.get(k) != v.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _json_patch(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply an RFC 6902 patch; raises a 409 on a failed `test` (an outdated resourceVersion)."""
    doc = copy.deepcopy(obj)
    for op in ops:
        *parents, leaf = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        target: Any = doc
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target.setdefault(p, {})
        if isinstance(target, list):
            index = len(target) if leaf == "-" else int(leaf)
            if op["op"] == "add":
                target.insert(index, op["value"])
            elif op["op"] == "remove":
                target.pop(index)
            elif op["op"] == "replace":
                target[index] = op["value"]
            elif op["op"] == "test" and target[index] != op["value"]:
                raise kmock.KubernetesError(409, "Conflict", f"test failed at {op['path']}")
        elif op["op"] in ("add", "replace"):
            target[leaf] = op["value"]
        elif op["op"] == "remove":
            target.pop(leaf, None)
        elif op["op"] == "test" and target.get(leaf) != op["value"]:
            raise kmock.KubernetesError(409, "Conflict", f"the object changed: {op['path']} is not {op['value']!r}")
    return doc


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    graceful_pods: bool = False
    # A validating admission stand-in: given a created object, the message of a 422 Invalid refusal, or None.
    refuse: Callable[[dict[str, Any]], str | None] | None = None
    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)

    _namespaces: dict[str, dict[str, Any]] = attrs.field(factory=dict, init=False)

    async def __call__(self, raw_request: Any) -> Any:
        # kmock 0.8 cannot parse /api/v1/namespaces[/NAME] (it takes "namespaces" for a namespace prefix).
        parts = raw_request.path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
            return await self._serve_namespaces(raw_request, parts[3] if len(parts) == 4 else None)
        return await super().__call__(raw_request)

    async def _serve_namespaces(self, raw_request: Any, name: str | None) -> Any:
        if raw_request.method == "POST":
            obj = await raw_request.json()
            obj.setdefault("apiVersion", "v1")
            obj["kind"] = "Namespace"
            obj["metadata"].update(uid=str(uuid.uuid4()), resourceVersion=str(next(self._versions)))
            obj["metadata"].setdefault("creationTimestamp", _now())
            self._namespaces[obj["metadata"]["name"]] = obj
            return await self._render_json(obj, 201)
        if raw_request.query.get("watch") == "true":  # namespaces never change in these tests: an idle stream
            import aiohttp.web

            response = aiohttp.web.StreamResponse()
            await response.prepare(raw_request)
            await asyncio.Event().wait()
        if name is not None:
            if name not in self._namespaces:
                return await self._render_error(kmock.KubernetesObjectNotFoundError())
            return await self._render_json(self._namespaces[name])
        meta = {"resourceVersion": str(next(self._versions))}
        items = list(self._namespaces.values())
        return await self._render_json({"apiVersion": "v1", "kind": "NamespaceList", "metadata": meta, "items": items})

    def _key(self, request: rendering.Request, name: str | None = None) -> Any:
        return (request.resource, request.namespace, name or request.name)

    def _stored(self, request: rendering.Request) -> dict[str, Any] | None:
        key = self._key(request)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    async def _handle(self, request: rendering.Request) -> Any:
        try:
            return await self._handle_k8s(request)
        finally:
            # kmock logs every request for assertions and matches reactions by scanning that log: keep only
            # requests in flight, or each request costs time proportional to all before it.
            log = self._requests
            for i in range(len(log) - 1, -1, -1):
                if log[i] is request or log[i]._raw_request is request._raw_request:
                    del log[i]
                    break

    async def _handle_k8s(self, request: rendering.Request) -> Any:
        if request.resource is None:
            return await super()._handle(request)
        try:
            prepared = self._prepare(request)
        except kmock.KubernetesError as err:
            return await self._render_error(err)
        if prepared is not request:
            # kmock's reactions find a request by identity in the handler's log: log the rewritten one.
            log = self._requests
            log[next(i for i in range(len(log) - 1, -1, -1) if log[i] is request)] = prepared
            request = prepared
        if request.action == enums.action.DELETE and request.name and await self._soft_delete_pod(request):
            return await self._render_json(self._stored(request))
        if request.action == enums.action.LIST and request.resource.plural:
            return await self._render_list(request)
        if request.action == enums.action.FETCH and request.name and not request.subresource:
            # A keyed lookup; kmock scans every stored object for each GET.
            key = self._key(request)
            found = self._objects[key] if key in self._objects else None  # noqa: SIM401 (no .get on kmock's view)
            if found is None or found.deleted:
                return await self._render_error(kmock.KubernetesObjectNotFoundError())
            return await self._render_json(found.raw)
        return await super()._handle(request)

    async def _render_json(self, payload: Any, status: int = 200) -> Any:
        import aiohttp.web

        return aiohttp.web.json_response(payload, status=status)

    async def _render_list(self, request: rendering.Request) -> Any:
        selector = request.params.get("labelSelector", "")
        items = [
            raw  # serialised right away, never mutated: no copy
            for (res, ns, _), obj in self._objects.items()
            if res == request.resource and not obj.deleted and (request.namespace in (None, ns))
            for raw in [obj.raw]
            if _selector_matches(selector, raw.get("metadata", {}).get("labels") or {})
        ]
        info = RESOURCES.get(self._info_key(request))
        group_version = "/".join(p for p in (request.resource.group, request.resource.version) if p)
        return await self._render_json(
            {
                "apiVersion": group_version,
                "kind": f"{info.kind if info else 'Object'}List",
                "metadata": {"resourceVersion": str(next(self._versions))},
                "items": items,
            }
        )

    def _prepare(self, request: rendering.Request) -> rendering.Request:
        """Rewrite a write request into the merge patch or full object kmock stores, stamping metadata."""
        if request.method == enums.method.PUT and request.name:
            request = attrs.evolve(request, action=enums.action.UPDATE)
        if request.action == enums.action.CREATE:
            obj = copy.deepcopy(request.data or {})
            refusal = self.refuse(obj) if self.refuse is not None else None
            if refusal:
                raise kmock.KubernetesError(422, "Invalid", refusal)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", request.namespace)
            if request.resource.plural == "namespaces":
                meta.pop("namespace", None)
            meta.update(
                uid=str(uuid.uuid4()),
                resourceVersion=str(next(self._versions)),
                generation=1,
                creationTimestamp=_now(),
            )
            if request.resource.plural == "events" and not meta.get("name"):
                meta["name"] = f"event.{uuid.uuid4().hex[:12]}"
            return attrs.evolve(request, data=obj)
        if request.action == enums.action.UPDATE and request.name:
            old = self._stored(request)
            if old is None:
                raise kmock.KubernetesObjectNotFoundError()
            ctype = request.headers.get("Content-Type", "")
            if request.method == enums.method.PUT:
                new = copy.deepcopy(request.data)
            elif "json-patch" in ctype:
                new = _json_patch(old, request.data)
            else:  # merge patch (strategic merge patches are treated as merge patches)
                new = _merge(old, request.data or {})
            has_status = "status" in (RESOURCES.get(self._info_key(request)) or kmock.ResourceInfo()).subresources
            if request.subresource == "status":
                new = {**copy.deepcopy(old), "status": new.get("status")}
            elif has_status:
                new["status"] = old.get("status")
            meta = new.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "namespace", "name"):
                if k in old.get("metadata", {}):
                    meta[k] = old["metadata"][k]
            meta["generation"] = old["metadata"].get("generation", 1) + (old.get("spec") != new.get("spec"))
            meta["resourceVersion"] = str(next(self._versions))
            return attrs.evolve(request, data=merge_patch(old, new))
        return request

    @staticmethod
    def _info_key(request: rendering.Request) -> str:
        r = request.resource
        return f"{r.group}/{r.version}/{r.plural}".lstrip("/")

    async def _soft_delete_pod(self, request: rendering.Request) -> bool:
        """Pods with a kubelet: the first delete marks them; the kubelet's delete with grace 0 removes them."""
        if not self.graceful_pods or request.resource.plural != "pods":
            return False
        grace = request.params.get("gracePeriodSeconds") or (request.data or {}).get("gracePeriodSeconds")
        old = self._stored(request)
        if old is None or str(grace) == "0":
            return False
        if old["metadata"].get("deletionTimestamp"):
            return True
        async with self._lock:
            obj = self._objects[self._key(request)]
            obj.patch({"metadata": {"deletionTimestamp": _now(), "resourceVersion": str(next(self._versions))}})
            await self._buses[request.resource].put({"type": "MODIFIED", "object": copy.deepcopy(obj.raw)})
        return True

    async def _serve_watch(self, request: rendering.Request) -> Any:
        selector = request.params.get("labelSelector", "")
        since = request.params.get("resourceVersion", "")
        since_rv = int(since) if since.isdigit() else 0
        async for event in super()._serve_watch(request):
            if isinstance(event, dict):
                meta = event.get("object", {}).get("metadata", {})
                if selector and not _selector_matches(selector, meta.get("labels") or {}):
                    continue
                # A watch from a list's resourceVersion starts after it (kmock replays every object).
                rv = meta.get("resourceVersion", "")
                if rv.isdigit() and int(rv) <= since_rv and event.get("type") != "DELETED":
                    continue
            yield event


def _merge(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(old)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class ApiServer:
    """The emulator on a loopback port, served from a thread of its own (tests stay synchronous)."""

    def __init__(
        self, graceful_pods: bool = False, refuse: Callable[[dict[str, Any]], str | None] | None = None
    ) -> None:
        self.emulator = Emulator(graceful_pods=graceful_pods, refuse=refuse)
        for key, info in RESOURCES.items():
            self.emulator.resources[key] = info
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="kube-api", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ApiServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the API emulator did not start within 10 s")
        self.create("v1", "namespaces", None, {"metadata": {"name": "default"}})
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # ---------------------------------------------------------------------- a synchronous client for tests

    def path(self, api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
        root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        parts = [root] + (["namespaces", namespace] if namespace else []) + [plural] + ([name] if name else [])
        return "/".join(parts)

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> Any:
        return self.call("GET", self.path(api_version, plural, namespace, name))

    def list(self, api_version: str, plural: str, namespace: str | None, selector: str = "") -> list[Any]:
        query = f"?labelSelector={urllib.request.quote(selector)}" if selector else ""
        return self.call("GET", self.path(api_version, plural, namespace) + query)["items"]

    def create(self, api_version: str, plural: str, namespace: str | None, obj: dict[str, Any]) -> Any:
        return self.call("POST", self.path(api_version, plural, namespace), obj)

    def patch(self, api_version: str, plural: str, namespace: str | None, name: str, patch: Any, sub: str = "") -> Any:
        path = self.path(api_version, plural, namespace, name) + (f"/{sub}" if sub else "")
        return self.call("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, api_version: str, plural: str, namespace: str | None, name: str, grace: int | None = None) -> Any:
        query = f"?gracePeriodSeconds={grace}" if grace is not None else ""
        return self.call("DELETE", self.path(api_version, plural, namespace, name) + query)
