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


def _parse_selector(selector: str) -> list[tuple[str, str, str]]:
    """A label selector as (operator, key, value) terms: "=", "!=", "exists", "!exists"."""
    terms = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            terms.append(("!=", k, v))
        elif "=" in term:
            k, v = term.split("==" if "==" in term else "=", 1)
            terms.append(("=", k, v.lstrip("=")))
        elif term.startswith("!"):
            terms.append(("!exists", term[1:], ""))
        else:
            terms.append(("exists", term, ""))
    return terms


def _terms_match(terms: list[tuple[str, str, str]], labels: dict[str, str]) -> bool:
    for op, k, v in terms:
        if op == "=" and labels.get(k) != v:
            return False
        if op == "!=" and labels.get(k) == v:
            return False
        if op == "exists" and k not in labels:
            return False
        if op == "!exists" and k in labels:
            return False
    return True


def _current(obj: Any) -> dict[str, Any] | None:
    """A stored object's live state (its own dict, for serialising at once), or None when deleted.

    kmock's `obj.raw` copies the dict behind three layers of views: too slow for a list of thousands of pods."""
    try:
        versions = obj._Object__history._ObjectHistory__items  # kmock 0.8's private list of versions
    except AttributeError:  # another kmock: its public API
        return None if obj.deleted else obj.raw
    return versions[-1]._ObjectVersion__value if versions and versions[-1] is not None else None


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


class _Store(dict):
    """kmock's object store, recording the keys it gains (for the index) and counting removals (which reorder it)."""

    def __init__(self) -> None:
        super().__init__()
        self.added: list[Any] = []
        self.removals = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        if key not in self:
            self.added.append(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.removals += 1
        super().__delitem__(key)

    def pop(self, *args: Any) -> Any:
        self.removals += 1
        return super().pop(*args)

    def popitem(self) -> Any:
        self.removals += 1
        return super().popitem()

    def clear(self) -> None:
        self.removals += 1
        super().clear()


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    graceful_pods: bool = False
    # A validating admission stand-in: given a created object, the message of a 422 Invalid refusal, or None.
    refuse: Callable[[dict[str, Any]], str | None] | None = None
    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)

    _namespaces: dict[str, dict[str, Any]] = attrs.field(factory=dict, init=False)
    # kmock finds an object by scanning every stored one; this index finds it by resource, namespace, name.
    _index: dict[Any, dict[str | None, dict[str, Any]]] = attrs.field(factory=dict, init=False)
    _indexed: int = attrs.field(default=0, init=False)
    _index_removals: int = attrs.field(default=0, init=False)

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
            self._forget(request)

    def _forget(self, request: rendering.Request) -> None:
        """kmock logs every request for assertions and matches reactions by scanning that log: keep only
        requests in flight, or each request costs time proportional to all before it."""
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
            found = self._live(request.resource, request.namespace, request.name)
            if found is None:
                return await self._render_error(kmock.KubernetesObjectNotFoundError())
            return await self._render_json(found.raw)
        return await super()._handle(request)

    async def _render_json(self, payload: Any, status: int = 200) -> Any:
        import aiohttp.web

        return aiohttp.web.json_response(payload, status=status)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        object.__setattr__(self._objects, "_objects", _Store())  # counts removals, for the index below

    def _by_namespace(self, resource: Any) -> dict[str | None, dict[str, Any]]:
        """Stored objects of a resource by namespace and name (deleted ones too), synced with kmock's store."""
        store: _Store = self._objects._objects  # kmock's dict, in insertion order: new objects come last
        if store.removals != self._index_removals:  # hard deletes (kmock itself only soft-deletes): start over
            self._index.clear()
            store.added[:] = store.keys()
            self._indexed, self._index_removals = 0, store.removals
        for key in store.added[self._indexed :]:
            res, ns, name = key
            self._index.setdefault(res, {}).setdefault(ns, {})[name] = store[key]
        self._indexed = len(store.added)
        return self._index.get(resource, {})

    def _find(self, resource: Any, namespace: str | None, name: str | None) -> Any:
        return self._index.get(resource, {}).get(namespace, {}).get(name)  # type: ignore[arg-type]

    def _live(self, resource: Any, namespace: str | None, name: str | None) -> Any:
        """The stored, not deleted object at this address, or None."""
        self._by_namespace(resource)
        found = self._find(resource, namespace, name)
        return None if found is None or found.deleted else found

    # kmock's own handlers, keyed instead of scanning all objects (same results).
    async def _serve_fetch(self, request: rendering.Request) -> Any:
        found = self._live(request.resource, request.namespace, request.name)
        if found is None:
            raise kmock.KubernetesObjectNotFoundError()
        return found.raw

    async def _serve_create(self, request: rendering.Request) -> Any:
        meta = request.data.get("metadata", {})
        found = self._live(
            request.resource, request.namespace or meta.get("namespace"), request.name or meta.get("name")
        )
        return found.raw

    async def _serve_update(self, request: rendering.Request) -> Any:
        self._by_namespace(request.resource)
        return self._find(request.resource, request.namespace, request.name).last.raw

    async def _serve_delete(self, request: rendering.Request) -> Any:
        return await self._serve_update(request)

    async def _render_list(self, request: rendering.Request) -> Any:
        terms = _parse_selector(request.params.get("labelSelector", ""))
        by_namespace = self._by_namespace(request.resource)
        spaces = by_namespace.values() if request.namespace is None else [by_namespace.get(request.namespace, {})]
        items = [
            raw  # serialised right away, never mutated: no copy
            for objects in spaces
            for obj in objects.values()
            for raw in [_current(obj)]
            if raw is not None and _terms_match(terms, raw.get("metadata", {}).get("labels") or {})
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
        terms = _parse_selector(request.params.get("labelSelector", ""))
        since = request.params.get("resourceVersion", "")
        since_rv = int(since) if since.isdigit() else 0
        self._forget(request)  # routed already; open for the whole test, it would slow the routing of every request
        async for event in super()._serve_watch(request):
            if isinstance(event, dict):
                meta = event.get("object", {}).get("metadata", {})
                if terms and not _terms_match(terms, meta.get("labels") or {}):
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

    def stored(self, api_version: str, plural: str, namespace: str) -> list[dict[str, Any]]:
        """The live objects in a namespace read on the server's own thread, without HTTP or JSON (benchmarks)."""

        async def read() -> list[dict[str, Any]]:
            em = self.emulator
            em._by_namespace(None)  # sync the index
            resources = [
                r
                for r in em._index
                if r.plural == plural and "/".join(filter(None, (r.group, r.version))) == api_version
            ]
            objects = [o for r in resources for o in em._by_namespace(r).get(namespace, {}).values()]
            return [o.raw for o in objects if not o.deleted]

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(30)

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
