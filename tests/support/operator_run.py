"""Run the real kopf operator (our handlers on an explicit registry) in a thread, against an API URL."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import kopf

from pretrain_operator.handlers import OperatorConfig, Runtime, register
from pretrain_operator.lifecycle import Settings


class OperatorThread:
    """`with OperatorThread(url, settings) as op:` runs kopf.operator() until the block ends."""

    def __init__(self, url: str, settings: Settings, metrics_port: int = 0, health_port: int = 0) -> None:
        self.registry = kopf.OperatorRegistry()
        connection = kopf.ConnectionInfo(server=url)
        config = OperatorConfig(lifecycle=settings, metrics_port=metrics_port, connection=connection)
        self.runtime: Runtime = register(self.registry, config)
        self.health_port = health_port
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="operator", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    clusterwide=True,
                    standalone=True,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                    liveness_endpoint=f"http://127.0.0.1:{self.health_port}/healthz" if self.health_port else None,
                )
            )
        except BaseException as err:  # reported by __exit__ and wait_for
            self._error = err
            self._ready.set()

    def __enter__(self) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the operator did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def check(self) -> None:
        if self._error is not None:
            raise RuntimeError("the operator stopped") from self._error


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0, op: OperatorThread | None = None) -> Any:
    """Poll `probe` until it returns something truthy; fail naming `what` (and the last value) after timeout."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if op is not None:
            op.check()
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")
