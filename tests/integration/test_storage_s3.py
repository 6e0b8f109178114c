"""S3Store against a real HTTP S3 endpoint (moto's server mode on loopback), with faults injected by a proxy.

The contract tests run against both backends, so LocalStore and S3Store cannot drift apart.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from pretrain_trainer.storage import (
    ObjectInfo,
    ObjectStore,
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    StorageOptions,
    StorageUnavailable,
    open_store,
    read_uri,
    write_uri,
)
from pretrain_trainer.storage.local_s3 import ensure_bucket
from pretrain_trainer.storage.s3 import S3Store
from tests.support.s3 import TEST_SECRET_ACCESS_KEY, FaultyProxy

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"{bucket}/datasets/demo", request.getfixturevalue("s3_env"))


@pytest.fixture
def proxied(s3_env: StorageOptions, s3_bucket: str, faulty_s3: FaultyProxy) -> S3Store:
    """A store whose every request goes through the fault-injecting proxy; counters start at zero."""
    store = open_store(f"{s3_bucket}/p", s3_env.with_overrides(endpoint_url=faulty_s3.url, max_attempts=4))
    assert isinstance(store, S3Store)
    return store


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed_objects(endpoint: str, bucket: str, keys: list[str]) -> None:
    """Create many one-byte objects quickly: plain keep-alive PUTs straight to moto, which does not check
    signatures. Only for setting the stage; the code under test always goes through boto3."""
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        for key in keys:
            conn.request("PUT", f"/{bucket}/{key}", body=b".")
            response = conn.getresponse()
            response.read()
            assert response.status == 200, (key, response.status)
    finally:
        conn.close()


def pending_uploads(store: S3Store) -> list[dict]:
    return store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])


# ------------------------------------------------------------------------------ contract, both backends


def test_write_then_read_returns_the_same_bytes(store):
    data = os.urandom(100_000)
    store.write("a/b.bin", data)
    assert store.read("a/b.bin") == data


def test_ranged_reads_are_end_exclusive_and_clipped_like_slices(store):
    data = bytes(range(256)) * 4
    store.write("r.bin", data)
    assert store.read("r.bin", 0, 1) == data[:1]
    assert store.read("r.bin", 100, 356) == data[100:356]
    assert store.read("r.bin", start=1000) == data[1000:]
    assert store.read("r.bin", end=10) == data[:10]
    assert store.read("r.bin", 1000, 5000) == data[1000:]
    assert store.read("r.bin", 1024) == b""
    assert store.read("r.bin", 7, 7) == b""
    store.write("empty", b"")
    assert store.read("empty") == b"" and store.read("empty", 0, 4) == b""


def test_list_is_recursive_sorted_relative_to_the_root_and_filtered_by_prefix(store):
    for key in ["train/s1.bin", "train/s0.bin", "train/deep/s2.bin", "index.json", "trainer.txt"]:
        store.write(key, b"x" * len(key))
    assert store.list() == [
        ObjectInfo("index.json", 10),
        ObjectInfo("train/deep/s2.bin", 17),
        ObjectInfo("train/s0.bin", 12),
        ObjectInfo("train/s1.bin", 12),
        ObjectInfo("trainer.txt", 11),
    ]
    assert [o.key for o in store.list("train/")] == ["train/deep/s2.bin", "train/s0.bin", "train/s1.bin"]
    assert store.list("missing/") == []


def test_exists_size_and_delete(store):
    assert not store.exists("k.bin")
    store.write("k.bin", b"12345")
    assert store.exists("k.bin") and store.size("k.bin") == 5
    store.delete("k.bin")
    assert not store.exists("k.bin")
    store.delete("k.bin")  # deleting a missing object is fine


def test_write_replaces_an_existing_object_completely(store):
    store.write("k", b"a much longer original value")
    store.write("k", b"short")
    assert store.read("k") == b"short"


def test_child_store_is_rooted_under_the_prefix(store):
    child = store.child("runs/r1")
    child.write("ckpt/meta.json", b"{}")
    assert child.uri == f"{store.uri}/runs/r1"
    assert child.uri_for("ckpt/meta.json") == f"{store.uri}/runs/r1/ckpt/meta.json"
    assert store.read("runs/r1/ckpt/meta.json") == b"{}"
    assert child.list() == [ObjectInfo("ckpt/meta.json", 2)]


def test_open_writer_streams_and_publishes_on_clean_exit(store):
    with store.open_writer("s.bin") as writer:
        for i in range(10):
            assert writer.write(bytes([i]) * 1000) == 1000
        assert not store.exists("s.bin")
    assert store.read("s.bin") == b"".join(bytes([i]) * 1000 for i in range(10))


def test_exception_inside_open_writer_leaves_no_object(store):
    with pytest.raises(RuntimeError, match="tokenizer crashed"), store.open_writer("half.bin") as writer:
        writer.write(b"partial")
        raise RuntimeError("tokenizer crashed")
    assert not store.exists("half.bin")
    assert store.list() == []


def test_missing_object_raises_not_found_naming_the_uri(store):
    with pytest.raises(StorageNotFound) as info:
        store.read("nope.bin")
    assert info.value.uri == store.uri_for("nope.bin")
    assert str(info.value).startswith(store.uri_for("nope.bin") + ": ")
    with pytest.raises(StorageNotFound):
        store.size("nope.bin")


def test_uri_for_round_trips_through_read_uri_and_write_uri(store, s3_env):
    write_uri(store.uri_for("x/t.json"), b'{"a": 1}', s3_env)
    assert read_uri(store.uri_for("x/t.json"), s3_env) == b'{"a": 1}'


def test_concurrent_ranged_reads_from_many_threads(store):
    data = os.urandom(64 * 1024)
    store.write("shard.bin", data)
    ranges = [(i * 1000, i * 1000 + 1500) for i in range(60)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda r: store.read("shard.bin", *r), ranges))
    assert results == [data[a:b] for a, b in ranges]


# ------------------------------------------------------------------------------------ uploads, listing


def test_multipart_upload_of_an_object_larger_than_the_part_size(s3_env, s3_bucket, faulty_s3):
    options = s3_env.with_overrides(endpoint_url=faulty_s3.url, part_size_bytes=5 * MiB)
    store = open_store(s3_bucket, options)
    data = os.urandom(11 * MiB + 123)
    with store.open_writer("big.bin") as writer:
        for offset in range(0, len(data), 3 * MiB):  # writes that do not line up with parts
            writer.write(data[offset : offset + 3 * MiB])
    assert store.read("big.bin") == data
    part_puts = [r for r in faulty_s3.requests if r.method == "PUT" and "partNumber=" in r.path]
    assert len(part_puts) == 3  # 5 MiB + 5 MiB + the 1 MiB remainder
    assert store.read("big.bin", 5 * MiB - 10, 5 * MiB + 10) == data[5 * MiB - 10 : 5 * MiB + 10]


def test_small_streamed_object_uses_a_single_put(proxied, faulty_s3):
    with proxied.open_writer("small.bin") as writer:
        writer.write(b"tiny")
    assert [(r.method, "uploads" in r.path) for r in faulty_s3.requests] == [("PUT", False)]


def test_exception_inside_open_writer_aborts_the_multipart_upload(s3_env, s3_bucket):
    store = open_store(s3_bucket, s3_env.with_overrides(part_size_bytes=5 * MiB))
    assert isinstance(store, S3Store)
    with pytest.raises(ValueError, match="bad shard"), store.open_writer("ckpt.bin") as writer:
        writer.write(os.urandom(6 * MiB))  # one full part is already uploaded
        assert len(pending_uploads(store)) == 1
        raise ValueError("bad shard")
    assert not store.exists("ckpt.bin")
    assert pending_uploads(store) == []


def test_failed_part_upload_aborts_and_reports_the_uri(s3_env, s3_bucket, faulty_s3):
    store = open_store(s3_bucket, s3_env.with_overrides(endpoint_url=faulty_s3.url, part_size_bytes=5 * MiB))
    assert isinstance(store, S3Store)
    faulty_s3.fail_next(1, status=403, code="AccessDenied", path_contains="partNumber=2")
    with pytest.raises(StorageAccessDenied, match=f"{store.uri}/denied.bin"), store.open_writer("denied.bin") as w:
        w.write(os.urandom(11 * MiB))
    assert not store.exists("denied.bin")
    assert pending_uploads(store) == []


def test_listing_more_than_1000_keys_paginates(proxied, faulty_s3, s3_endpoint):
    keys = [f"many/{i:05d}" for i in range(1001)]
    seed_objects(s3_endpoint, proxied.bucket, [f"p/{key}" for key in keys])
    listed = proxied.list("many/")
    assert [o.key for o in listed] == keys
    assert [r.method for r in faulty_s3.requests] == ["GET", "GET"]  # two pages: 1000 + 1


# ------------------------------------------------------------------------------------------- transient


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError"), (503, "503")])
def test_transient_error_responses_are_retried_then_succeed(proxied, faulty_s3, status, code):
    proxied.write("k", b"payload")
    faulty_s3.clear()
    faulty_s3.fail_next(2, status=status, code=code)
    assert proxied.read("k") == b"payload"
    assert faulty_s3.faults_injected["fail"] == 2
    assert faulty_s3.requests_seen == 3


def test_transient_503_on_head_without_a_body_is_retried_then_succeeds(proxied, faulty_s3):
    proxied.write("k", b"12")
    faulty_s3.clear()
    faulty_s3.fail_next(1, methods=["HEAD"])
    assert proxied.size("k") == 2
    assert faulty_s3.requests_seen == 2


def test_connection_reset_is_retried_then_succeeds(proxied, faulty_s3):
    proxied.write("k", b"payload")
    faulty_s3.clear()
    faulty_s3.reset_next(2)
    assert proxied.read("k") == b"payload"
    assert faulty_s3.faults_injected["reset"] == 2
    assert faulty_s3.requests_seen == 3


def test_truncated_response_body_is_retried_then_succeeds(proxied, faulty_s3):
    data = os.urandom(256 * 1024)
    proxied.write("k", data)
    faulty_s3.clear()
    faulty_s3.truncate_next(2, methods=["GET"])
    assert proxied.read("k") == data
    assert proxied.read("k", 1000, 200_000) == data[1000:200_000]
    assert faulty_s3.faults_injected["truncate"] == 2
    assert faulty_s3.requests_seen == 4


def test_transient_faults_during_uploads_and_listing_are_retried(s3_env, s3_bucket, faulty_s3):
    store = open_store(s3_bucket, s3_env.with_overrides(endpoint_url=faulty_s3.url, part_size_bytes=5 * MiB))
    data = os.urandom(11 * MiB)
    faulty_s3.fail_next(1, methods=["PUT"], path_contains="partNumber=2")
    faulty_s3.reset_next(1, methods=["POST"])  # CreateMultipartUpload
    with store.open_writer("big.bin") as writer:
        writer.write(data)
    faulty_s3.fail_next(1, methods=["GET"], path_contains="list-type=2")
    assert store.list() == [ObjectInfo("big.bin", len(data))]
    assert faulty_s3.faults_total == 3
    assert store.read("big.bin") == data


def test_fault_that_never_clears_ends_in_unavailable_after_exactly_max_attempts(proxied, faulty_s3, caplog):
    proxied.write("k", b"x")
    faulty_s3.clear()
    faulty_s3.fail_next(100, status=503, code="SlowDown")
    caplog.set_level(logging.WARNING, logger="pretrain_trainer")
    with pytest.raises(StorageUnavailable) as info:
        proxied.read("k")
    assert faulty_s3.requests_seen == proxied.options.max_attempts == 4
    message = str(info.value)
    assert message.startswith(f"{proxied.uri}/k: GetObject still failing after 4 attempt(s)")
    assert "SlowDown (HTTP 503)" in message and "spec.storage.retryTimeoutSeconds" in message
    retries = [r for r in caplog.records if r.name == "pretrain_trainer.storage"]
    assert [r.storage_attempt for r in retries] == [1, 2, 3]
    assert all(r.storage_uri == f"{proxied.uri}/k" and r.levelno == logging.WARNING for r in retries)


def test_an_outage_shorter_than_the_retry_budget_is_waited_out_and_a_longer_one_ends_in_unavailable(
    s3_env, s3_bucket, faulty_s3
):
    # Scaled down for CI: a 1.5 s outage against a 6 s budget, then a 3 s outage against a 1 s budget.
    store = open_store(f"{s3_bucket}/o", s3_env.with_overrides(endpoint_url=faulty_s3.url, retry_timeout_s=6.0))
    store.write("k", b"payload")
    faulty_s3.outage(1.5)
    started = time.monotonic()
    assert store.read("k") == b"payload"
    assert 1.5 <= time.monotonic() - started < 6.0
    assert faulty_s3.faults_injected["fail"] >= 3

    faulty_s3.clear()
    short = open_store(f"{s3_bucket}/o", s3_env.with_overrides(endpoint_url=faulty_s3.url, retry_timeout_s=1.0))
    faulty_s3.outage(3.0)
    with pytest.raises(StorageUnavailable) as info:
        short.read("k")
    assert str(info.value).startswith(f"{s3_bucket}/o/k: GetObject still failing after ")
    assert "ServiceUnavailable (HTTP 503)" in str(info.value)


def test_unreachable_endpoint_fails_quickly_with_unavailable(s3_env):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    store = open_store("s3://bucket/x", s3_env.with_overrides(endpoint_url=endpoint, max_attempts=3))
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        store.read("index.json")
    assert time.monotonic() - started < 5
    assert str(info.value).startswith("s3://bucket/x/index.json: GetObject still failing after 3 attempt(s)")
    assert endpoint in str(info.value)


# ------------------------------------------------------------------------------------------- permanent


def test_missing_bucket_raises_not_found_immediately_with_a_fix(s3_env, faulty_s3):
    store = open_store("s3://no-such-bucket-here/x", s3_env.with_overrides(endpoint_url=faulty_s3.url))
    for call in (lambda: store.read("index.json"), lambda: store.list(), lambda: store.write("index.json", b"")):
        with pytest.raises(StorageNotFound) as info:
            call()
        assert "no such bucket 'no-such-bucket-here'" in str(info.value)
        assert f"at endpoint {faulty_s3.url}" in str(info.value)
        assert "Create the bucket or fix the URI." in str(info.value)
    assert faulty_s3.requests_seen == 3  # one request each: nothing was retried
    with pytest.raises(StorageNotFound, match="no such bucket"):  # HEAD has no body: the bucket is probed
        store.size("index.json")


def test_missing_key_raises_not_found_immediately(proxied, faulty_s3):
    with pytest.raises(StorageNotFound, match=r"/p/absent.json: no such object .* write the object first"):
        proxied.read("absent.json")
    assert faulty_s3.requests_seen == 1
    assert not proxied.exists("absent.json")


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("AccessDenied", "may not s3:GetObject in bucket"),
        ("InvalidAccessKeyId", "Check AWS_ACCESS_KEY_ID"),
        ("SignatureDoesNotMatch", "Check AWS_SECRET_ACCESS_KEY and AWS_REGION"),
    ],
)
def test_403_raises_access_denied_immediately_with_a_fix(proxied, faulty_s3, code, fix):
    faulty_s3.fail_next(5, status=403, code=code)
    with pytest.raises(StorageAccessDenied) as info:
        proxied.read("k")
    assert faulty_s3.requests_seen == 1
    assert str(info.value).startswith(f"{proxied.uri}/k: GetObject denied ({code} (HTTP 403))")
    assert fix in str(info.value)


def test_403_on_head_raises_access_denied_rather_than_pretending_the_object_is_missing(proxied, faulty_s3):
    faulty_s3.fail_next(1, status=403, code="AccessDenied", methods=["HEAD"])
    with pytest.raises(StorageAccessDenied):
        proxied.exists("k")


# ------------------------------------------------------------------------------------------- hygiene


def test_secret_never_appears_in_errors_or_debug_logs(s3_env, s3_bucket, faulty_s3, caplog):
    caplog.set_level(logging.DEBUG, logger="pretrain_trainer")
    explicit_secret = "explicit-" + TEST_SECRET_ACCESS_KEY
    options = s3_env.with_overrides(
        endpoint_url=faulty_s3.url, access_key_id="explicit-id", secret_access_key=explicit_secret, max_attempts=2
    )
    store = open_store(f"{s3_bucket}/p", options)
    messages = [repr(options)]
    faulty_s3.fail_next(1, status=403, code="SignatureDoesNotMatch")
    faulty_s3.fail_next(2, status=503, code="SlowDown", methods=["PUT"])
    for call in (
        lambda: store.read("k"),
        lambda: store.write("k", b"x"),
        lambda: store.read("missing"),
        lambda: open_store("s3://absent-bucket/x", options).list(),
    ):
        with pytest.raises(StorageError) as info:
            call()
        messages += [str(info.value), repr(info.value)]
    userinfo_endpoint = f"http://admin:pw-{TEST_SECRET_ACCESS_KEY}@127.0.0.1:{closed_port()}"
    with pytest.raises(StorageUnavailable) as info:
        open_store("s3://b/x", options.with_overrides(endpoint_url=userinfo_endpoint, max_attempts=1)).read("k")
    messages.append(str(info.value))
    assert "http://***@127.0.0.1" in str(info.value)
    for text in [*messages, caplog.text]:
        assert TEST_SECRET_ACCESS_KEY not in text
        assert explicit_secret not in text
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # the log was really captured at DEBUG


def test_path_style_addressing_is_used_when_an_endpoint_is_set(proxied, faulty_s3):
    proxied.write("k", b"x")
    (request,) = faulty_s3.requests
    assert request.path.startswith(f"/{proxied.bucket}/p/k")
    assert request.host == faulty_s3.url.removeprefix("http://")
    assert proxied.client.meta.config.s3["addressing_style"] == "path"


def test_explicit_addressing_style_is_passed_to_boto3(s3_env):
    store = open_store("s3://bucket", s3_env.with_overrides(addressing_style="virtual"))
    assert isinstance(store, S3Store)
    assert store.client.meta.config.s3["addressing_style"] == "virtual"


def test_ensure_bucket_is_idempotent(s3_env):
    name = f"demo-{uuid.uuid4().hex[:12]}"
    assert ensure_bucket(f"s3://{name}/datasets/x", s3_env) == f"s3://{name}"
    assert ensure_bucket(name, s3_env) == f"s3://{name}"
    assert open_store(f"s3://{name}", s3_env).list() == []


def test_open_store_reads_endpoint_and_credentials_from_the_environment(s3_env, s3_bucket):
    # No options: everything comes from AWS_* variables, as in a worker pod.
    write_uri(f"{s3_bucket}/from-env.txt", b"ok")
    assert read_uri(f"{s3_bucket}/from-env.txt") == b"ok"
