"""The kopf handlers: thin. Each reads the job and its children, asks `lifecycle.plan` what to do, and applies it.

Reconciles are level-based and idempotent: every trigger (a job or pod event, the resync timer, a scheduled
wake-up after a backoff) re-reads the current state, so a missed or repeated event changes nothing. Triggers for
one job are coalesced, and one job is reconciled at a time.

    registry = kopf.OperatorRegistry()
    runtime = register(registry, OperatorConfig(...))      # then kopf.operator(registry=registry, ...)
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiohttp
import kopf

from pretrain_trainer.contract import API_GROUP, PENDING, PLURAL, RESTART_ROUND_ANNOTATION, VERSION

from . import in_place, naming
from .kube import CONFIG_MAPS, JOBS, NODES, PODS, SERVICES, ApiError, KubeClient, merge_patch
from .lifecycle import Plan, Settings, plan, refused_by_api
from .metrics import OperatorMetrics
from .progress import scrape_progress
from .workers import read_worker

log = logging.getLogger("pretrain_operator")
DEBOUNCE_S = 0.3


@dataclass(frozen=True)
class OperatorConfig:
    lifecycle: Settings = field(default_factory=Settings)
    metrics_port: int = 8000  # 0: no metrics endpoint
    # Tests point the operator at an API emulator; in a cluster kopf finds the service account or kubeconfig.
    connection: kopf.ConnectionInfo | None = None


class Runtime:
    """The operator's state across handlers: API client, metrics, per-job locks and wake-up timers."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.metrics = OperatorMetrics()
        self.kube: KubeClient | None = None
        self.http: aiohttp.ClientSession | None = None
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._queued: set[tuple[str, str]] = set()
        self._wakeups: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._closed = False

    async def login(self, **kwargs: Any) -> kopf.ConnectionInfo | None:
        info = self.config.connection
        if info is None:
            info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is None:
            raise kopf.LoginError("no in-cluster service account and no kubeconfig; set KUBECONFIG")
        if self.kube is None:
            self.kube = KubeClient(info, relogin=lambda: self.login(**kwargs))
        return info

    async def close(self) -> None:
        self._closed = True
        for handle in self._wakeups.values():
            handle.cancel()
        if self.kube is not None:
            await self.kube.close()
        if self.http is not None:
            await self.http.close()

    async def reconcile(self, namespace: str, name: str, *, scrape: bool = False) -> None:
        """Reconcile one job, unless a reconcile of it is already waiting (it will see this trigger's state)."""
        key = (namespace, name)
        if self._closed or (key in self._queued and not scrape):
            return
        self._queued.add(key)
        async with self._locks.setdefault(key, asyncio.Lock()):
            self._queued.discard(key)
            started = time.perf_counter()
            try:
                await self._reconcile(namespace, name, scrape)
            except ApiError as err:
                self.metrics.reconcile_errors.labels("api").inc()
                if err.transient:
                    raise kopf.TemporaryError(str(err), delay=2) from err
                raise
            except (aiohttp.ClientError, TimeoutError) as err:
                self.metrics.reconcile_errors.labels("connection").inc()
                raise kopf.TemporaryError(f"API server unreachable: {err}", delay=5) from err
            finally:
                self.metrics.reconcile_duration.observe(time.perf_counter() - started)

    def wake_up(self, namespace: str, name: str, delay: float) -> None:
        """Reconcile again after `delay` seconds (a backoff's end, a TTL), keeping the earliest wake-up."""
        key, loop = (namespace, name), asyncio.get_running_loop()
        due = loop.time() + delay
        old = self._wakeups.get(key)
        if old is not None and not old.cancelled() and old.when() <= due:
            return
        if old is not None:
            old.cancel()
        self._wakeups[key] = loop.call_at(due, lambda: asyncio.ensure_future(self._wake(namespace, name)))

    async def _wake(self, namespace: str, name: str) -> None:
        self._wakeups.pop((namespace, name), None)
        try:
            await self.reconcile(namespace, name)
        except kopf.TemporaryError:  # the next event or resync retries
            pass
        except ApiError as err:
            log.error("%s/%s: reconcile failed: %s", namespace, name, err)

    async def _job_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        assert self.kube is not None, "login runs before any handler"
        pods = await self.kube.list(PODS, namespace, naming.label_selector(naming.selector(name)))
        # An emulator (or a stale cache) may ignore the selector: keep exactly this job's pods.
        return [p for p in pods if (p["metadata"].get("labels") or {}).get(naming.JOB_LABEL) == name]

    async def _progress(self, name: str, pods: list[dict[str, Any]], now: datetime) -> dict[str, Any] | None:
        """Rank 0's progress, from the port its pod declares: the one it serves, built from the spec in effect
        (a refused edit of spec.metrics.port does not move it)."""
        grace = self.config.lifecycle.stuck_grace_s
        workers = (read_worker(pod, now, grace) for pod in pods if not naming.is_spare(pod))
        rank0 = next((w for w in workers if w.index == 0 and w.state == "running"), None)
        if rank0 is None or not rank0.pod_ip or not rank0.metrics_port:
            return None
        if self.http is None:
            self.http = aiohttp.ClientSession()
        return await scrape_progress(self.http, rank0.pod_ip, rank0.metrics_port, name)

    async def _node_readiness(self, names: set[str]) -> dict[str, bool]:
        """Whether each node is Ready; a node that cannot be read counts as not Ready (the gang is recreated
        rather than restarted in place)."""
        assert self.kube is not None, "login runs before any handler"
        out = {}
        for node_name in sorted(names):
            try:
                node = await self.kube.get(NODES, "", node_name)
            except ApiError as err:
                if err.transient:
                    raise
                log.warning("cannot read node %s (%s): in-place restarts need `get nodes`", node_name, err)
                node = None
            conditions = ((node or {}).get("status") or {}).get("conditions") or []
            out[node_name] = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return out

    async def _reconcile(self, namespace: str, name: str, scrape: bool) -> None:
        assert self.kube is not None, "login runs before any handler"
        k = self.kube
        job = await k.get(JOBS, namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        pods = await self._job_pods(namespace, name)
        config_map = await k.get(CONFIG_MAPS, namespace, naming.config_map_name(name))
        service = await k.get(SERVICES, namespace, naming.service_name(name))
        now = datetime.now(timezone.utc)
        progress = await self._progress(name, pods, now) if scrape else None
        workers = [read_worker(pod, now, self.config.lifecycle.stuck_grace_s) for pod in pods]
        nodes = await self._node_readiness(in_place.nodes_to_check(workers))
        result = plan(job, pods, config_map, service, progress, now, self.config.lifecycle, nodes)
        try:
            await self._apply(job, result)
        except ApiError as err:
            if err.status not in (400, 422):  # only a refusal of what the operator built is final
                raise
            result = refused_by_api(job, now, err.message, result)
            await self._apply(job, result)
        status = result.status
        self.metrics.observe_job(namespace, name, status.get("phase", PENDING), int(status.get("restarts") or 0))
        self.metrics.observe_progress(namespace, name, status)
        if result.restart_reason:
            self.metrics.restarts.labels(namespace, name, result.restart_reason).inc()
        if result.delete_job:
            self.metrics.forget_job(namespace, name)
        elif result.requeue_after is not None and result.requeue_after < self.config.lifecycle.resync_s:
            self.wake_up(namespace, name, result.requeue_after)

    async def _apply(self, job: dict[str, Any], result: Plan) -> None:
        """Children first, then the status (it records the intent: a bumped attempt survives a crash), then
        deletions and new pods; events last."""
        k, meta = self.kube, job["metadata"]
        assert k is not None
        ns, name = meta["namespace"], meta["name"]
        resources = {"Pod": PODS, "Service": SERVICES, "ConfigMap": CONFIG_MAPS}
        pods = [o for o in result.create if o["kind"] == "Pod"]
        for obj in result.create:
            if obj["kind"] != "Pod":
                await k.create(resources[obj["kind"]], ns, obj)
        for obj in result.replace:
            await k.patch(resources[obj["kind"]], ns, obj["metadata"]["name"], {"data": obj["data"]})
        old_status = {key: v for key, v in (job.get("status") or {}).items() if key != "kopf"}
        patch = merge_patch(old_status, result.status)
        if patch:
            await k.patch(JOBS, ns, name, {"status": patch}, subresource="status")
        for pod_name, round_ in result.annotate.items():  # in-place restarts: the workers watch this
            await k.patch(PODS, ns, pod_name, {"metadata": {"annotations": {RESTART_ROUND_ANNOTATION: str(round_)}}})
        for pod in result.delete_pods:
            await k.delete(PODS, ns, pod)
        for pod in pods:
            await k.create(PODS, ns, pod)
        for ev in result.events:
            kopf.event(job, type=ev.type, reason=ev.reason, message=ev.message[:1000])
            log.info("%s/%s %s: %s", ns, name, ev.reason, ev.message)
        if result.delete_job:
            await k.delete(JOBS, ns, name)

    async def delete_children(self, namespace: str, name: str) -> None:
        """On job deletion: stop the workers now (the garbage collector would too, but later)."""
        assert self.kube is not None
        for pod in await self._job_pods(namespace, name):
            await self.kube.delete(PODS, namespace, pod["metadata"]["name"])
        await self.kube.delete(SERVICES, namespace, naming.service_name(name))
        await self.kube.delete(CONFIG_MAPS, namespace, naming.config_map_name(name))
        self.metrics.forget_job(namespace, name)
        handle = self._wakeups.pop((namespace, name), None)
        if handle is not None:
            handle.cancel()


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> Runtime:
    """Register the operator's handlers on `registry`; returns the runtime they share."""
    rt = Runtime(config)
    jobs = dict(group=API_GROUP, version=VERSION, plural=PLURAL, registry=registry)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # The CRD's structural schema has no room for kopf's bookkeeping in .status: keep it in annotations.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
        settings.persistence.finalizer = f"{API_GROUP}/cleanup"
        settings.posting.reporting_component = naming.MANAGED_BY
        settings.posting.level = logging.ERROR  # our own Events say what happened; only errors add more
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        if config.metrics_port:
            rt.metrics.serve(config.metrics_port)

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return await rt.login(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await rt.close()

    # Event handlers only schedule a reconcile, DEBOUNCE_S later: a burst of events (a gang of pods starting)
    # makes one reconcile, and it runs after kopf's own patch of the event's object (its finalizer) instead of
    # racing it for the object's resourceVersion.
    @kopf.on.event(**jobs)  # type: ignore[arg-type]
    async def job_event(type: str, name: str, namespace: str, **_: Any) -> None:
        if type != "DELETED":
            rt.wake_up(namespace, name, DEBOUNCE_S)

    @kopf.timer(**jobs, interval=config.lifecycle.resync_s)  # type: ignore[arg-type]
    async def resync(name: str, namespace: str, **_: Any) -> None:
        await rt.reconcile(namespace, name, scrape=True)

    @kopf.on.delete(**jobs)  # type: ignore[arg-type]
    async def job_deleted(name: str, namespace: str, **_: Any) -> None:
        await rt.delete_children(namespace, name)

    @kopf.on.event("", "v1", "pods", labels={naming.MANAGED_BY_LABEL: naming.MANAGED_BY}, registry=registry)
    async def pod_event(labels: dict[str, str], namespace: str, **_: Any) -> None:
        job = labels.get(naming.JOB_LABEL)
        if job:
            rt.wake_up(namespace, job, DEBOUNCE_S)

    return rt


__all__ = ["OperatorConfig", "Runtime", "register"]
