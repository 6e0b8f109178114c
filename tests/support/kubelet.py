"""A kubelet for the operator's end-to-end tests: runs each pod the operator creates as local processes.

It polls the API emulator for pods, and for each new one builds a container filesystem under a temp folder
(ConfigMap volumes written out, emptyDirs created), resolves the env (Secrets, fieldRefs), starts the pod's
command with the pod's environment, and reports phases back through the status subresource: Running with a
podIP, then Succeeded or Failed with the exit code and the termination message file's contents, as a kubelet
does. Deleting a pod sends SIGTERM to its processes, SIGKILL after terminationGracePeriodSeconds, then removes
the pod (delete with grace 0).

Capacity: `kubelet.capacity = N` (None: unbounded, the default) lets at most N pods hold a place at once (running,
or terminating until their processes exit). A pod that does not fit stays Pending with `PodScheduled=False`,
reason Unschedulable, as the scheduler reports it, and starts, oldest first, once a place frees up. Lowering the
capacity below what runs evicts the pods started last, as a node under pressure or a preempting scheduler would:
a `DisruptionTarget` condition, SIGTERM (they checkpoint and exit 143), then phase Failed.

In-place restarts: the pods run on one Node object (`NODE`, Ready; `set_node_ready(False)` plays a failing
node), a downward-API volume's annotation files are rewritten when the pod's annotations change, and an exec
readiness probe runs every periodSeconds (the container's `ready` and the pod's Ready condition follow it).
`kill_trainer(pod)` kills one trainer process inside a pod, leaving its worker alive. A pod's processes, trainers
in their own sessions included, all die when it is killed or force-deleted, as a container's would.

Pods are loopback processes, so names are mapped as a cluster network would: the job's rendezvous host
(`<job>-worker-0.<job>.<ns>.svc`) resolves to 127.0.0.1, and the rendezvous port (contract.RENDEZVOUS_PORT)
becomes a free port per gang, since all pods share one network namespace here.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretrain_operator import naming
from pretrain_trainer.contract import RENDEZVOUS_PORT
from pretrain_trainer.launch import free_port
from tests.support.checkout import checkout_pythonpath
from tests.support.kube_api import ApiServer

BIN = Path(sys.executable).parent
_EVICTED = {
    "type": "DisruptionTarget",
    "status": "True",
    "reason": "TerminationByKubelet",
    "message": "evicted: the kubelet fixture's capacity was lowered",
}
POD_IP = "127.0.0.1"  # every pod shares the host's loopback
NODE = "kubelet-fixture"  # the one node every pod runs on


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux: /proc/<pid>/task/<tid>/children), children first."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        for kid in kids:
            out += [kid, *_descendants(kid)]
    return out


def _kill_tree(pid: int) -> None:
    """SIGKILL a pod's process and everything it started (in its own sessions too), as a container's end does."""
    for p in [pid, *_descendants(pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)


@dataclass
class RunningPod:
    name: str
    namespace: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path
    grace_s: float
    termination_log: Path
    terminating_since: float | None = None
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    probe: list[str] | None = None  # the readiness probe's exec command, mapped to this pod's folders
    probe_period_s: float = 10.0
    next_probe: float = 0.0
    ready: bool = True
    downward: dict[Path, str] = field(default_factory=dict)  # file -> the annotation it shows


class Kubelet:
    """`with Kubelet(api, workdir) as kubelet:` runs pods until the block ends."""

    def __init__(self, api: ApiServer, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.api, self.workdir = api, workdir
        self.extra_env = extra_env or {}
        self.pods: dict[tuple[str, str], RunningPod] = {}
        self.history: list[str] = []  # pod names in start order, for assertions
        self._ports: dict[tuple[str, str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        self.error: BaseException | None = None
        self.capacity: int | None = None  # pods that may hold a place at once; None: unbounded
        self._unschedulable: set[tuple[str, str]] = set()  # pods told they do not fit

    def __enter__(self) -> Kubelet:
        self.api.create("v1", "nodes", None, {"metadata": {"name": NODE}, "status": {"conditions": []}})
        self.set_node_ready(True)
        self._thread.start()
        return self

    def set_node_ready(self, ready: bool) -> None:
        condition = {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady"}
        self.api.patch("v1", "nodes", None, NODE, {"status": {"conditions": [condition]}})

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for pod in self.pods.values():
            if pod.proc.poll() is None:
                _kill_tree(pod.proc.pid)
                pod.proc.wait()

    def kill(self, pod_name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a pod's main process group; SIGKILL kills everything in the pod, as a container's crash or an OOM
        kill does (the pod then fails)."""
        pod = self._live(pod_name)
        if sig == signal.SIGKILL:
            _kill_tree(pod.proc.pid)
        else:
            os.killpg(pod.proc.pid, sig)

    def kill_trainer(self, pod_name: str, sig: int = signal.SIGKILL) -> int:
        """Kill one training trainer process of a running pod (a crash inside the container; the worker lives on);
        its pid. A standby (`--standby GO` whose GO file does not exist yet) is not training and is left alone."""
        for pid in _descendants(self._live(pod_name).proc.pid):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
                standby = "--standby" in argv and not Path(argv[argv.index("--standby") + 1]).exists()
                if "pretrain_trainer" in argv and not standby:
                    os.kill(pid, sig)
                    return pid
        raise AssertionError(f"{pod_name} runs no trainer process")

    def freeze(self, pod_name: str) -> None:
        """Stop a pod's processes where they are (SIGSTOP); signals sent meanwhile wait until `thaw`."""
        os.killpg(self._live(pod_name).proc.pid, signal.SIGSTOP)

    def thaw(self, pod_name: str) -> None:
        os.killpg(self._live(pod_name).proc.pid, signal.SIGCONT)

    def _live(self, pod_name: str) -> RunningPod:
        return next(p for p in self.pods.values() if p.name == pod_name and not p.done)

    def logs(self, pod_name: str) -> str:
        pods = [p for p in self.pods.values() if p.name == pod_name]
        return "\n".join(p.log.read_text(errors="replace") for p in pods if p.log.exists())

    # ------------------------------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._sync()
                time.sleep(0.2)
        except BaseException as err:
            self.error = err
            raise

    def _sync(self) -> None:
        seen = set()
        for pod in self.api.list("v1", "pods", None):
            meta = pod["metadata"]
            key = (meta["namespace"], meta["uid"])
            seen.add(key)
            running = self.pods.get(key)
            if running is None and not meta.get("deletionTimestamp"):
                if self._places_left() > 0:
                    self._unschedulable.discard(key)
                    self.pods[key] = self._start(pod)
                elif key not in self._unschedulable:
                    self._unschedulable.add(key)
                    self._report_unschedulable(pod)
                continue
            if running is None:
                self._unschedulable.discard(key)
                self.api.delete("v1", "pods", meta["namespace"], meta["name"], grace=0)
                continue
            self._watch_process(running, pod)
        for key, running in self.pods.items():
            if key not in seen and running.proc.poll() is None:  # force-deleted
                _kill_tree(running.proc.pid)
        self._evict_over_capacity()

    def _holding(self) -> list[RunningPod]:
        """Pods holding a place: their processes have not exited."""
        return [p for p in self.pods.values() if not p.done and p.proc.poll() is None]

    def _places_left(self) -> int:
        return 1 if self.capacity is None else self.capacity - len(self._holding())

    def _report_unschedulable(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": f"0/1 nodes are available: room for {self.capacity} pods (the kubelet fixture's capacity)",
            "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        status = {"phase": "Pending", "conditions": [condition]}
        self.api.patch("v1", "pods", meta["namespace"], meta["name"], {"status": status}, sub="status")

    def _evict_over_capacity(self) -> None:
        """Past the capacity, the pods started last are evicted (DisruptionTarget, then SIGTERM)."""
        if self.capacity is None:
            return
        staying = [p for p in self._holding() if p.terminating_since is None and not p.extra.get("evicted")]
        for pod in list(reversed(staying))[: max(len(staying) - self.capacity, 0)]:
            pod.extra["evicted"] = True
            conditions = [{"type": "PodScheduled", "status": "True"}, _EVICTED]
            self.api.patch("v1", "pods", pod.namespace, pod.name, {"status": {"conditions": conditions}}, sub="status")
            os.killpg(pod.proc.pid, signal.SIGTERM)

    def _watch_process(self, running: RunningPod, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        code = running.proc.poll()
        if meta.get("deletionTimestamp"):
            if code is None and running.terminating_since is None:
                running.terminating_since = time.monotonic()
                os.killpg(running.proc.pid, signal.SIGTERM)
            elif code is None and time.monotonic() - (running.terminating_since or 0) > running.grace_s:
                _kill_tree(running.proc.pid)
            elif code is not None:
                running.done = True
                self.api.delete("v1", "pods", meta["namespace"], meta["name"], grace=0)
            return
        if code is None:
            self._update_downward(running, meta)
            self._probe(running, meta)
        if code is not None and not running.done:
            running.done = True
            code = 128 - code if code < 0 else code
            message = running.termination_log.read_text()[:4096] if running.termination_log.exists() else ""
            terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message}
            status: dict[str, Any] = {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [{"name": "trainer", "ready": False, "state": {"terminated": terminated}}],
            }
            if running.extra.get("evicted"):
                status["conditions"] = [_EVICTED]
            self.api.patch("v1", "pods", meta["namespace"], meta["name"], {"status": status}, sub="status")

    def _update_downward(self, running: RunningPod, meta: dict[str, Any]) -> None:
        """Rewrite a downward-API file whose annotation changed (atomically, as the kubelet swaps them)."""
        annotations = meta.get("annotations") or {}
        for path, key in running.downward.items():
            value = annotations.get(key, "")
            if path.read_text() != value:
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(value)
                tmp.replace(path)

    def _probe(self, running: RunningPod, meta: dict[str, Any]) -> None:
        if running.probe is None or time.monotonic() < running.next_probe:
            return
        running.next_probe = time.monotonic() + running.probe_period_s
        try:
            ok = subprocess.run(running.probe, capture_output=True, timeout=5, check=False).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok != running.ready:
            running.ready = ok
            self.api.patch("v1", "pods", meta["namespace"], meta["name"], {"status": _running(ok)}, sub="status")

    # ------------------------------------------------------------------------------------------ start a pod

    def _start(self, pod: dict[str, Any]) -> RunningPod:
        meta, spec = pod["metadata"], pod["spec"]
        ns, name = meta["namespace"], meta["name"]
        root = self.workdir / f"{name}-{meta['uid'][:8]}"
        root.mkdir(parents=True)
        container = spec["containers"][0]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts: dict[str, Path] = {}
        downward: dict[Path, str] = {}
        for mount in container.get("volumeMounts", []):
            path = root / mount["mountPath"].lstrip("/")
            path.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = path
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                cm = self.api.get("v1", "configmaps", ns, volume["configMap"]["name"])
                for key, text in (cm or {}).get("data", {}).items():
                    (path / key).write_text(text)
            for item in (volume.get("downwardAPI") or {}).get("items", []):
                field_path = item["fieldRef"]["fieldPath"]
                annotation = field_path.removeprefix("metadata.annotations['").removesuffix("']")
                assert annotation != field_path, f"the kubelet fixture shows annotations only, not {field_path}"
                downward[path / item["path"]] = annotation
                (path / item["path"]).write_text((meta.get("annotations") or {}).get(annotation, ""))
        job = meta["labels"][naming.JOB_LABEL]
        attempt = meta["labels"][naming.ATTEMPT_LABEL]
        port = self._ports.setdefault((ns, job, attempt), free_port())
        host = naming.master_addr(job, ns)

        def local(value: str) -> str:
            value = value.replace(host, "127.0.0.1")
            for mount_path, path in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                if value == mount_path or value.startswith(mount_path + "/"):
                    return str(path) + value[len(mount_path) :]
            if value.startswith("/dev/") or value.startswith("/tmp/"):
                return str(root / value.lstrip("/"))
            return value

        env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "HOME": str(root),
            "PYTHONPATH": checkout_pythonpath(),
            **self.extra_env,
        }
        for item in container.get("env", []):
            if "value" in item:
                value = item["value"]
                env[item["name"]] = str(port) if value == str(RENDEZVOUS_PORT) else local(value)
            elif "secretKeyRef" in item["valueFrom"]:
                ref = item["valueFrom"]["secretKeyRef"]
                secret = self.api.get("v1", "secrets", ns, ref["name"]) or {}
                data = secret.get("data", {})
                if ref["key"] in data:
                    env[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
                elif not ref.get("optional"):
                    raise AssertionError(f"pod {name}: secret {ref['name']} has no key {ref['key']}")
            elif "fieldRef" in item["valueFrom"]:
                fields = {"metadata.name": name, "status.podIP": POD_IP}
                env[item["name"]] = fields.get(item["valueFrom"]["fieldRef"]["fieldPath"], "")
        termination_log = Path(local(container.get("terminationMessagePath", "/dev/termination-log")))
        termination_log.parent.mkdir(parents=True, exist_ok=True)
        command = [local(a) for a in container["command"] + container.get("args", [])]
        command[0] = shutil.which(command[0], path=env["PATH"]) or command[0]
        log = root / "container.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.history.append(name)
        probe = container.get("readinessProbe")
        self.api.patch("v1", "pods", ns, name, {"spec": {"nodeName": NODE}})
        self.api.patch("v1", "pods", ns, name, {"status": _running(probe is None)}, sub="status")
        grace = float(spec.get("terminationGracePeriodSeconds", 30))
        pod_ = RunningPod(name, ns, root, proc, log, grace, termination_log, ready=probe is None, downward=downward)
        if probe is not None:
            pod_.probe = [local(a) for a in probe["exec"]["command"]]
            pod_.probe_period_s = float(probe.get("periodSeconds", 10))
        return pod_


def _running(ready: bool) -> dict[str, Any]:
    """A running pod's status, ready or not (its container's readiness and the pod's Ready condition)."""
    return {
        "phase": "Running",
        "podIP": POD_IP,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ],
        "containerStatuses": [{"name": "trainer", "ready": ready, "state": {"running": {}}}],
    }
