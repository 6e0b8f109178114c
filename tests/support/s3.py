"""A fault-injecting HTTP reverse proxy in front of the local S3 endpoint.

Clients are pointed at the proxy and sign their requests for the proxy's host; the proxy forwards method,
path, query, headers (Host included) and body to moto unchanged, and moto does not verify signatures.
Faults are programmed per request: an S3 XML error, a connection reset, or a response whose body stops
short of its Content-Length; or as an outage, a window of time in which every request fails (a brown-out).
Everything stays on loopback and is bounded (body size, record count, socket timeouts).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

FaultKind = Literal["fail", "reset", "truncate"]

# Credentials the S3 fixtures put in the environment. The secret is distinctive so a test can prove it
# never shows up in a message or a log line.
TEST_ACCESS_KEY_ID = "testing-key-id"
TEST_SECRET_ACCESS_KEY = "tEsT-sEcReT-9f4c2a7e-never-print-me"

MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_RECORDS = 10_000
SOCKET_TIMEOUT_S = 30.0
# Hop-by-hop headers belong to one connection, not to the request; the proxy re-frames bodies itself.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "expect"}
)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    host: str
    fault: FaultKind | None
    at: float = 0.0  # time.monotonic() when the proxy received it


@dataclass
class _Fault:
    kind: FaultKind
    remaining: int
    status: int
    code: str
    methods: frozenset[str] | None
    path_contains: str | None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.methods is None or method in self.methods)
            and (self.path_contains is None or self.path_contains in path)
        )


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FaultyProxy:
    """`with FaultyProxy(moto_url) as proxy:` then point boto3 at `proxy.url`."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port or not _is_loopback(parts.hostname):
            raise ValueError(f"FaultyProxy forwards only to a loopback http://host:port, got {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._records: deque[SeenRequest] = deque(maxlen=MAX_RECORDS)
        self.requests_seen = 0
        self.faults_injected: dict[FaultKind, int] = {"fail": 0, "reset": 0, "truncate": 0}
        # An armed outage: (seconds, trigger substring or None, status, code); once triggered, until when.
        self._outage: tuple[float, str | None, int, str] | None = None
        self._outage_until = 0.0
        self.outage_started: float | None = None  # time.monotonic() when the last outage began
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FaultyProxy:
        if self._server is not None:
            raise RuntimeError("FaultyProxy already started")
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        # A short poll interval keeps stop() (and so every test using the proxy) from idling for 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="faulty-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(SOCKET_TIMEOUT_S)
        self._server = None

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FaultyProxy is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- fault plan

    def fail_next(
        self,
        n: int,
        status: int = 503,
        code: str = "SlowDown",
        methods: Iterable[str] | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next `n` matching requests with an S3 XML error instead of forwarding them."""
        self._plan("fail", n, status, code, methods, path_contains)

    def reset_next(self, n: int, methods: Iterable[str] | None = None, path_contains: str | None = None) -> None:
        """Read the next `n` matching requests, then reset the connection without any response."""
        self._plan("reset", n, 0, "", methods, path_contains)

    def truncate_next(self, n: int, methods: Iterable[str] | None = None, path_contains: str | None = None) -> None:
        """Forward the next `n` matching requests but send only half the response body, then close.

        The headers still announce the full Content-Length. Meant for GETs: a response with an empty
        body has nothing to cut.
        """
        self._plan("truncate", n, 0, "", methods, path_contains)

    def outage(
        self, seconds: float, starting_on: str | None = None, status: int = 503, code: str = "ServiceUnavailable"
    ) -> None:
        """Fail every request for `seconds` with an S3 XML error: from now, or from the first request whose path
        contains `starting_on` (that request fails too), so a test can place a brown-out at a chosen moment."""
        with self._lock:
            self._outage = (seconds, starting_on, status, code)
            if starting_on is None:
                self._start_outage()

    def _start_outage(self) -> None:
        assert self._outage is not None
        self.outage_started = time.monotonic()
        self._outage_until = self.outage_started + self._outage[0]

    def clear(self) -> None:
        """Drop all pending faults and zero the counters and the request record."""
        with self._lock:
            self._outage, self._outage_until = None, 0.0
            self._faults.clear()
            self._records.clear()
            self.requests_seen = 0
            self.faults_injected = {"fail": 0, "reset": 0, "truncate": 0}

    @property
    def faults_total(self) -> int:
        with self._lock:
            return sum(self.faults_injected.values())

    @property
    def requests(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._records)

    def _plan(
        self,
        kind: FaultKind,
        n: int,
        status: int,
        code: str,
        methods: Iterable[str] | None,
        path_contains: str | None,
    ) -> None:
        if n < 1:
            raise ValueError(f"fault count must be >= 1, got {n}")
        wanted = frozenset(m.upper() for m in methods) if methods is not None else None
        with self._lock:
            self._faults.append(_Fault(kind, n, status, code, wanted, path_contains))

    def _take(self, method: str, path: str, host: str) -> _Fault | None:
        with self._lock:
            self.requests_seen += 1
            if self._outage is not None and not self._outage_until and self._outage[1] in path:
                self._start_outage()
            if self._outage is not None and time.monotonic() < self._outage_until:
                fault: _Fault | None = _Fault("fail", 1, self._outage[2], self._outage[3], None, None)
            else:
                fault = next((f for f in self._faults if f.matches(method, path)), None)
                if fault is not None:
                    fault.remaining -= 1
            if fault is not None:
                self.faults_injected[fault.kind] += 1
            self._records.append(SeenRequest(method, path, host, fault.kind if fault else None, time.monotonic()))
            return fault


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], proxy: FaultyProxy):
        self.proxy = proxy
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients giving up on a faulted connection is the point of this server, not news.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real S3 endpoint; boto3 pools connections
    timeout = SOCKET_TIMEOUT_S
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _proxy(self) -> None:
        body = self._read_body()
        if body is None:
            return
        proxy = self.server.proxy
        fault = proxy._take(self.command, self.path, self.headers.get("Host", ""))
        if fault is not None and fault.kind == "reset":
            self._reset()
            return
        if fault is not None and fault.kind == "fail":
            self._send_s3_error(fault.status, fault.code)
            return
        status, headers, payload = self._forward(body)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault is not None and fault.kind == "truncate":
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True  # a clean FIN: the client sees EOF short of Content-Length
            return
        self.wfile.write(payload)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    self._send_s3_error(413, "EntityTooLarge")
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send_s3_error(413, "EntityTooLarge")
            return None
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(*self.server.proxy.upstream, timeout=SOCKET_TIMEOUT_S)
        try:
            # Host is in `headers`, so http.client sends it as-is: moto sees the request the client signed.
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in _HOP_BY_HOP
                and k.lower() not in ("server", "date")  # send_response writes its own
                and (self.command == "HEAD" or k.lower() != "content-length")
            ]
            return response.status, kept, payload
        finally:
            conn.close()

    def _send_s3_error(self, status: int, code: str) -> None:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>fault injected by FaultyProxy</Message>"
            f"<RequestId>faulty-proxy</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", "faulty-proxy")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(xml)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(xml)

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST instead of FIN: the client sees "connection reset by peer".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()
