"""A loopback S3 endpoint for benchmarks, in its own process: moto's server with two changes.

    python benchmarks/bench_s3_server.py PORT_FILE

1. Ranged GETs are served without copying the object. moto's own `get_object` copies the whole object out of
   its buffer (and `_handle_range_header` slices the copy) for every request, so a 4 KiB range of a 40 MB
   object costs a 40 MB copy: that measures moto, not the reader. Here a `bytes=a-b` range reads only those
   bytes from the key's buffer, under the key's lock, as a real object store would.
2. A WSGI layer in front of the app counts requests by method and can delay every response by a fixed time
   (set through `POST /__bench__/delay?ms=20`), standing in for an object store's time to first byte.
   `GET /__bench__/stats` returns the counts as JSON; neither path reaches moto.

The server runs in its own process so that its CPU time is not charged to the reader being measured. It
writes its port to PORT_FILE once it listens, and stops when its parent closes its stdin.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from typing import Any

_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def _patch_ranged_get() -> None:
    from moto.s3.responses import S3Response

    original = S3Response.get_object

    def get_object(self: Any) -> Any:
        match = _RANGE.fullmatch(self.headers.get("range", "") or "")
        if match is None or self._get_int_param("partNumber"):
            return original(self)
        key, not_modified = self._get_key()
        begin, end = int(match[1]), min(int(match[2]), key.size - 1)
        if not_modified or begin > end:
            return original(self)
        with key.lock:
            key._value_buffer.seek(begin)
            data = key._value_buffer.read(end - begin + 1)
        headers = dict(key.response_dict)
        headers.update(
            {
                "content-length": str(len(data)),
                "content-range": f"bytes {begin}-{end}/{key.size}",
                "Accept-Ranges": "bytes",
            }
        )
        return 206, headers, data  # not 200: moto's _handle_range_header (which would slice again) is skipped

    S3Response.get_object = get_object


class Bench:
    """WSGI middleware: request counts and an optional delay before every response."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.delay_s = 0.0
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/__bench__/"):
            if path == "/__bench__/delay":
                self.delay_s = float(re.search(r"ms=([\d.]+)", environ.get("QUERY_STRING", ""))[1]) / 1000
            with self.lock:
                body = json.dumps({"delay_ms": self.delay_s * 1000, **self.counts}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        with self.lock:
            self.counts[environ["REQUEST_METHOD"]] += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.app(environ, start_response)


def main(port_file: str) -> None:
    from moto.moto_server.threaded_moto_server import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    _patch_ranged_get()
    app = Bench(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(port_file + ".tmp", "w") as handle:
        handle.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    sys.stdin.read()  # until the parent closes the pipe (or dies)
    server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
