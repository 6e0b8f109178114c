"""An embedded S3 endpoint on loopback (moto's server mode) for the demo and the tests.

It is a real HTTP endpoint: the code under test talks to it through boto3 exactly as it would talk to
AWS or MinIO, so retries, ranged reads and multipart uploads are exercised end to end.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Iterator

from pretrain_trainer.storage.base import StorageOptions

log = logging.getLogger("pretrain_trainer.storage")

START_TIMEOUT_S = 30.0


def _require_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        # moto accepts any credentials and keeps data in memory; it must never be reachable from outside.
        raise ValueError(f"the local S3 endpoint only binds to loopback addresses, got {host!r}")


def _check_port_free(host: str, port: int) -> None:
    # ThreadedMotoServer.start() waits forever if its server thread fails to bind, so fail first, here.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot start the local S3 endpoint on {host}:{port}: {exc.strerror}") from exc


@contextlib.contextmanager
def start_local_s3(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run an in-memory S3 endpoint on `host:port` (a free port when 0) and yield its URL.

    Any credentials are accepted and signatures are not checked. Data lives only as long as the process.
    """
    _require_loopback(host)
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise RuntimeError(
            "the embedded local S3 endpoint needs moto's server mode: pip install 'pretrain-operator[local]'"
        ) from exc
    if port:
        _check_port_free(host, port)
    # werkzeug logs every request at INFO to stderr unless told otherwise; the demo's output should show
    # training progress, not S3 traffic. An explicitly configured level is left alone.
    werkzeug_log = logging.getLogger("werkzeug")
    if werkzeug_log.level == logging.NOTSET:
        werkzeug_log.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    starter = threading.Thread(target=server.start, name="local-s3-start", daemon=True)
    starter.start()
    starter.join(START_TIMEOUT_S)
    if starter.is_alive():
        raise RuntimeError(f"the local S3 endpoint on {host}:{port} did not start within {START_TIMEOUT_S:.0f}s")
    bound_host, bound_port = server.get_host_and_port()
    url = f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}"
    log.info("local S3 endpoint listening at %s", url)
    try:
        yield url
    finally:
        server.stop()
        log.info("local S3 endpoint at %s stopped", url)


def ensure_bucket(uri_or_bucket: str, options: StorageOptions | None = None) -> str:
    """Create the bucket of `s3://bucket[/prefix]` (or a bare bucket name) if missing; returns `s3://bucket`.

    Idempotent, so the demo can call it on every start.
    """
    from pretrain_trainer.storage.s3 import S3Store

    name = uri_or_bucket[len("s3://") :] if uri_or_bucket.startswith("s3://") else uri_or_bucket
    bucket = name.split("/", 1)[0]
    if not bucket:
        raise ValueError(f"{uri_or_bucket!r} names no bucket; expected s3://bucket[/prefix] or a bucket name")
    store = S3Store(bucket, "", options)
    if store.create_bucket():
        log.info("created bucket %s at %s", store.uri, store.endpoint)
    return store.uri
