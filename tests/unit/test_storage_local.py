"""The storage layer without a network: LocalStore, options, URIs, errors and the retry policy."""

from __future__ import annotations

import os
import pickle
import random
import threading

import botocore.exceptions as bce
import pytest
import urllib3.exceptions as u3e

from pretrain_trainer.config import StorageSpec
from pretrain_trainer.storage import (
    ObjectInfo,
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    StorageOptions,
    StorageUnavailable,
    open_store,
    read_uri,
    split_uri,
    write_uri,
)
from pretrain_trainer.storage.local import TMP_MARKER, LocalStore
from pretrain_trainer.storage.retry import backoff_delay, call_with_retry, is_transient


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(str(tmp_path / "root"))


def client_error(code: str, status: int) -> bce.ClientError:
    return bce.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


def exc_id(exc: BaseException) -> str:
    code = f"-{exc.response['Error']['Code']}" if isinstance(exc, bce.ClientError) else ""
    return type(exc).__name__ + code


# ------------------------------------------------------------------------------------------ LocalStore


def test_write_then_read_returns_the_bytes_and_ranges_behave_like_slices(store):
    data = bytes(range(256)) * 10
    store.write("a/b/c.bin", data)
    assert store.read("a/b/c.bin") == data
    assert store.read("a/b/c.bin", 10, 20) == data[10:20]
    assert store.read("a/b/c.bin", start=2500) == data[2500:]
    assert store.read("a/b/c.bin", end=7) == data[:7]
    assert store.read("a/b/c.bin", 2550, 9999) == data[2550:]
    assert store.read("a/b/c.bin", 9999) == b""
    assert store.read("a/b/c.bin", 5, 5) == b""


def test_invalid_ranges_are_rejected_before_touching_the_disk(store):
    store.write("k", b"abc")
    with pytest.raises(ValueError, match="start"):
        store.read("k", -1)
    with pytest.raises(ValueError, match="end"):
        store.read("k", 2, 1)


def test_list_is_recursive_sorted_relative_to_root_and_filtered_by_prefix(store):
    for key in ["train/b.bin", "train/a.bin", "val/x.bin", "index.json", "train/sub/z.bin", "trainer.txt"]:
        store.write(key, key.encode())
    assert [o.key for o in store.list()] == sorted(
        ["index.json", "train/a.bin", "train/b.bin", "train/sub/z.bin", "trainer.txt", "val/x.bin"]
    )
    assert store.list("train/") == [
        ObjectInfo("train/a.bin", 11),
        ObjectInfo("train/b.bin", 11),
        ObjectInfo("train/sub/z.bin", 15),
    ]
    assert [o.key for o in store.list("train")] == ["train/a.bin", "train/b.bin", "train/sub/z.bin", "trainer.txt"]
    assert store.list("nothing/here/") == []


def test_list_of_a_directory_that_does_not_exist_yet_is_empty_like_an_s3_prefix(tmp_path):
    assert LocalStore(str(tmp_path / "never-written")).list() == []


def test_exists_size_and_delete(store):
    assert not store.exists("x/y")
    store.write("x/y", b"12345")
    assert store.exists("x/y")
    assert store.size("x/y") == 5
    assert not store.exists("x")  # a directory is not an object
    store.delete("x/y")
    assert not store.exists("x/y")
    store.delete("x/y")  # missing is fine


def test_child_store_is_rooted_under_the_prefix(store):
    child = store.child("runs/r1/")
    child.write("ckpt/step-1.bin", b"w")
    assert child.uri == store.uri + "/runs/r1"
    assert child.uri_for("ckpt/step-1.bin") == store.uri + "/runs/r1/ckpt/step-1.bin"
    assert store.read("runs/r1/ckpt/step-1.bin") == b"w"
    assert [o.key for o in child.list()] == ["ckpt/step-1.bin"]


def test_open_writer_publishes_only_on_clean_exit(store):
    with store.open_writer("shards/s0.bin") as writer:
        assert writer.write(b"abc") == 3
        writer.write(memoryview(b"def"))
        assert not store.exists("shards/s0.bin")  # not visible while being written
        assert store.list() == []  # and the temp file never shows up in a listing
    assert store.read("shards/s0.bin") == b"abcdef"


def test_exception_inside_open_writer_leaves_no_object_and_no_temp_file(store):
    store.write("keep.bin", b"old")
    with pytest.raises(RuntimeError, match="boom"), store.open_writer("keep.bin") as writer:
        writer.write(b"new, partial")
        raise RuntimeError("boom")
    assert store.read("keep.bin") == b"old"
    with pytest.raises(RuntimeError), store.open_writer("new/dirs/x.bin") as writer:
        raise RuntimeError("before any byte")
    assert sorted(os.listdir(store.root)) == ["keep.bin"]  # not even the directories it created
    leftovers = [name for _, _, files in os.walk(store.root) for name in files if TMP_MARKER in name]
    assert leftovers == []


def test_overwrite_is_atomic_for_concurrent_readers(store):
    size = 256 * 1024
    store.write("obj", b"a" * size)
    stop = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            data = store.read("obj")
            seen.append(data[:1])
            assert data in (b"a" * size, b"b" * size), "reader saw a partial object"

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(100):
            store.write("obj", (b"b" if i % 2 else b"a") * size)
    finally:
        stop.set()
        thread.join()
    assert seen


def test_read_of_a_missing_file_raises_not_found_naming_the_uri_and_a_fix(store):
    store.write("present", b"x")
    with pytest.raises(StorageNotFound) as info:
        store.read("absent.bin")
    assert info.value.uri == store.uri + "/absent.bin"
    assert str(info.value).startswith(store.uri + "/absent.bin: no such file")
    assert "write the object first" in str(info.value)


def test_read_below_a_missing_directory_raises_not_found_naming_the_directory(tmp_path):
    store = LocalStore(str(tmp_path / "missing-dir"))
    with pytest.raises(StorageNotFound, match="does not exist"):
        store.read("a/b.bin")
    with pytest.raises(StorageNotFound):
        store.size("a/b.bin")


def test_size_of_a_directory_is_not_found(store):
    store.write("d/x", b"1")
    with pytest.raises(StorageNotFound):
        store.size("d")
    with pytest.raises(StorageNotFound):
        store.read("d")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file_raises_access_denied(store):
    store.write("secret.bin", b"x")
    path = os.path.join(store.root, "secret.bin")
    os.chmod(path, 0)
    try:
        with pytest.raises(StorageAccessDenied, match="permission"):
            store.read("secret.bin")
    finally:
        os.chmod(path, 0o644)


@pytest.mark.parametrize("key", ["", "/abs", "a/", "../escape", "a/../../b", "a//b", "./a", "a\\b"])
def test_keys_that_are_ambiguous_or_escape_the_root_are_rejected(store, key):
    with pytest.raises(ValueError, match="key"):
        store.write(key, b"x")


def test_keys_that_look_like_temp_files_are_rejected(store):
    with pytest.raises(ValueError, match="must not contain"):
        store.write(f"x{TMP_MARKER}1", b"x")


# ---------------------------------------------------------------------------------------- URIs, helpers


def test_open_store_accepts_file_uris_and_plain_paths(tmp_path, monkeypatch):
    assert open_store(f"file://{tmp_path}/d/").uri == f"file://{tmp_path}/d"
    assert open_store(f"file://localhost{tmp_path}").uri == f"file://{tmp_path}"
    assert open_store(str(tmp_path / "p")).uri == f"file://{tmp_path}/p"
    monkeypatch.chdir(tmp_path)
    assert open_store("rel/dir").uri == f"file://{tmp_path}/rel/dir"
    assert open_store("file:///").uri_for("etc") == "file:///etc"


@pytest.mark.parametrize("uri", ["gs://bucket/x", "http://host/x", "hdfs://nn/x"])
def test_open_store_rejects_unknown_schemes_naming_uri_and_supported_ones(uri):
    with pytest.raises(ValueError) as info:
        open_store(uri)
    assert uri in str(info.value)
    assert "s3://bucket" in str(info.value) and "file:///" in str(info.value)


def test_open_store_rejects_file_uris_with_a_remote_host():
    with pytest.raises(ValueError, match="absolute local path"):
        open_store("file://otherhost/data")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b/p/tokenizer.json", ("s3://b/p", "tokenizer.json")),
        ("s3://b/tokenizer.json", ("s3://b", "tokenizer.json")),
        ("file:///data/x/t.json", ("file:///data/x", "t.json")),
        ("file:///t.json", ("file:///", "t.json")),
        ("/data/t.json", ("/data", "t.json")),
        ("/t.json", ("/", "t.json")),
        ("out/t.json", ("out", "t.json")),
        ("t.json", (".", "t.json")),
    ],
)
def test_split_uri_gives_an_openable_root_and_a_key(uri, expected):
    assert split_uri(uri) == expected


@pytest.mark.parametrize("uri", ["s3://bucket", "s3://bucket/dir/", "", "gs://b/k"])
def test_split_uri_rejects_uris_that_name_no_object(uri):
    with pytest.raises(ValueError):
        split_uri(uri)


def test_read_uri_and_write_uri_round_trip_locally(tmp_path):
    write_uri(f"file://{tmp_path}/deep/dir/t.json", b"{}")
    assert read_uri(str(tmp_path / "deep/dir/t.json")) == b"{}"


# ----------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("addressing_style", "sideways"),
        ("max_attempts", 0),
        ("backoff_base_s", -1.0),
        ("backoff_max_s", float("nan")),
        ("connect_timeout_s", 0),
        ("read_timeout_s", -5),
        ("part_size_bytes", 1024),
        ("endpoint_url", "minio:9000"),
    ],
)
def test_invalid_options_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        StorageOptions(**{field: value})


def test_addressing_style_error_lists_the_allowed_values():
    with pytest.raises(ValueError, match="auto, path, virtual"):
        StorageOptions(addressing_style="dns")


def test_half_a_key_pair_is_rejected():
    with pytest.raises(ValueError, match="together"):
        StorageOptions(access_key_id="id-only")


def test_from_env_prefers_the_s3_specific_endpoint_and_lets_overrides_win():
    env = {
        "AWS_ENDPOINT_URL": "http://generic:1",
        "AWS_ENDPOINT_URL_S3": "http://s3-only:2",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-central-1",
        "PRETRAIN_S3_ADDRESSING_STYLE": "Virtual",
    }
    options = StorageOptions.from_env(env, max_attempts=2)
    assert options.endpoint_url == "http://s3-only:2"
    assert options.region == "eu-central-1"
    assert options.addressing_style == "virtual"
    assert options.max_attempts == 2
    fallback = StorageOptions.from_env({"AWS_ENDPOINT_URL": "http://generic:1", "AWS_DEFAULT_REGION": "x-1"})
    assert (fallback.endpoint_url, fallback.region) == ("http://generic:1", "x-1")
    assert StorageOptions.from_env({}) == StorageOptions()
    with pytest.raises(ValueError, match="no field"):
        StorageOptions.from_env({}, part_size=1)


def test_options_from_a_job_storage_spec_keep_the_environment_where_the_spec_is_empty_or_auto():
    env = {"AWS_ENDPOINT_URL": "http://env:1", "AWS_REGION": "env-1", "PRETRAIN_S3_ADDRESSING_STYLE": "virtual"}
    assert StorageOptions.from_spec(StorageSpec(), env) == StorageOptions.from_env(env)
    spec = StorageSpec(endpoint="http://minio:9000", region="eu-north-1", addressing_style="path")
    options = StorageOptions.from_spec(spec, env)
    assert (options.endpoint_url, options.region, options.addressing_style) == (
        "http://minio:9000",
        "eu-north-1",
        "path",
    )
    assert StorageOptions.from_spec(StorageSpec(retry_timeout_seconds=45), env).retry_timeout_s == 45.0


def test_options_repr_never_shows_credentials():
    options = StorageOptions(access_key_id="AKIDEXAMPLE", secret_access_key="wJalrXUtnFEMI", session_token="tok")
    assert "wJalrXUtnFEMI" not in repr(options)
    assert "tok'" not in repr(options) and "AKIDEXAMPLE" not in repr(options)


def test_endpoint_userinfo_is_redacted_in_validation_errors():
    with pytest.raises(ValueError) as info:
        StorageOptions(endpoint_url="ftp://user:hunter2@host")
    assert "hunter2" not in str(info.value)


# ------------------------------------------------------------------------------------------------ errors


def test_storage_errors_name_the_uri_survive_pickling_and_redact_userinfo():
    err = StorageUnavailable("s3://b/k", "cannot reach http://user:hunter2@minio:9000. Check it.")
    assert str(err) == "s3://b/k: cannot reach http://***@minio:9000. Check it."
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is StorageUnavailable and str(clone) == str(err) and clone.uri == "s3://b/k"
    assert issubclass(StorageNotFound, StorageError) and issubclass(StorageAccessDenied, StorageError)


# ----------------------------------------------------------------------------------------- retry policy


@pytest.mark.parametrize(
    "exc",
    [
        client_error("SlowDown", 503),
        client_error("InternalError", 500),
        client_error("502", 502),
        client_error("RequestTimeout", 400),
        client_error("Throttling", 400),
        bce.EndpointConnectionError(endpoint_url="http://x"),
        bce.ConnectionClosedError(endpoint_url="http://x"),
        bce.ReadTimeoutError(endpoint_url="http://x"),
        bce.ResponseStreamingError(error="reset"),
        bce.IncompleteReadError(actual_bytes=1, expected_bytes=2),
        u3e.ProtocolError("Connection broken"),
        ConnectionResetError(),
        ConnectionRefusedError(),
        TimeoutError(),
    ],
    ids=exc_id,
)
def test_transient_faults_are_classified_as_retryable(exc):
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        client_error("NoSuchBucket", 404),
        client_error("NoSuchKey", 404),
        client_error("404", 404),
        client_error("AccessDenied", 403),
        client_error("InvalidAccessKeyId", 403),
        client_error("SignatureDoesNotMatch", 403),
        client_error("InvalidArgument", 400),
        bce.SSLError(endpoint_url="https://x", error="bad cert"),
        bce.NoCredentialsError(),
        ValueError("a bug"),
    ],
    ids=exc_id,
)
def test_permanent_faults_are_not_retried(exc):
    assert not is_transient(exc)


def test_backoff_is_full_jitter_exponential_and_capped():
    rng = random.Random(0)
    for attempt in range(1, 12):
        ceiling = min(1.0, 0.1 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, 0.1, 1.0, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # really spread over the range, not a fixed step


def test_retry_loop_is_bounded_and_translates_permanent_errors(caplog):
    options = StorageOptions(max_attempts=3, backoff_base_s=0.5)
    sleeps: list[float] = []
    calls = 0

    def always_503() -> None:
        nonlocal calls
        calls += 1
        raise client_error("SlowDown", 503)

    with pytest.raises(StorageUnavailable) as info:
        call_with_retry(
            always_503, uri="s3://b/k", action="GetObject", options=options, translate=lambda e: None,
            unavailable_hint="Check it.", sleep=sleeps.append,
        )  # fmt: skip
    assert calls == 3 and len(sleeps) == 2
    assert (
        str(info.value)
        == "s3://b/k: GetObject still failing after 3 attempt(s) in 0.0 s; last error: SlowDown (HTTP 503). Check it."
    )
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]

    with pytest.raises(StorageNotFound):
        call_with_retry(
            lambda: (_ for _ in ()).throw(client_error("NoSuchKey", 404)), uri="s3://b/k", action="GetObject",
            options=options, translate=lambda e: StorageNotFound("s3://b/k", "gone"), unavailable_hint="",
            sleep=sleeps.append,
        )  # fmt: skip
    with pytest.raises(KeyError):  # our own bugs are not dressed up as storage errors
        call_with_retry(
            lambda: {}["x"], uri="s3://b/k", action="GetObject", options=options, translate=lambda e: None,
            unavailable_hint="", sleep=sleeps.append,
        )  # fmt: skip
    assert len(sleeps) == 2


class FakeClock:
    """Time that passes only when the retry loop sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_brown_out_shorter_than_the_retry_budget_is_waited_out(caplog):
    clock = FakeClock()
    calls = 0

    def down_for_40_seconds() -> str:
        nonlocal calls
        calls += 1
        if clock.now < 40.0:
            raise client_error("ServiceUnavailable", 503)
        return "ok"

    options = StorageOptions(retry_timeout_s=60.0)  # no attempt cap: only time bounds the retries
    result = call_with_retry(
        down_for_40_seconds, uri="s3://b/k", action="GetObject", options=options, translate=lambda e: None,
        unavailable_hint="", sleep=clock.sleep, clock=lambda: clock.now,
    )  # fmt: skip
    assert result == "ok" and clock.now >= 40.0
    assert calls > 10  # the old 5-attempt policy gave up after about 3 s of backoff
    assert max(clock.sleeps) <= options.backoff_max_s


def test_the_retry_budget_is_spent_to_the_second_then_unavailable_names_the_uri_and_the_spec_field():
    clock = FakeClock()
    options = StorageOptions(retry_timeout_s=30.0)
    with pytest.raises(StorageUnavailable) as info:
        call_with_retry(
            lambda: (_ for _ in ()).throw(client_error("SlowDown", 503)), uri="s3://b/k", action="GetObject",
            options=options, translate=lambda e: None, unavailable_hint="Raise spec.storage.retryTimeoutSeconds.",
            sleep=clock.sleep, clock=lambda: clock.now,
        )  # fmt: skip
    assert clock.now == pytest.approx(30.0)  # the last backoff ends at the deadline, not before or after
    assert str(info.value).startswith("s3://b/k: GetObject still failing after ")
    assert " in 30.0 s; last error: SlowDown (HTTP 503). Raise spec.storage.retryTimeoutSeconds." in str(info.value)


def test_a_zero_retry_budget_fails_at_the_first_transient_error():
    clock = FakeClock()
    with pytest.raises(StorageUnavailable, match="after 1 attempt"):
        call_with_retry(
            lambda: (_ for _ in ()).throw(client_error("SlowDown", 503)), uri="s3://b/k", action="GetObject",
            options=StorageOptions(retry_timeout_s=0.0), translate=lambda e: None, unavailable_hint="",
            sleep=clock.sleep, clock=lambda: clock.now,
        )  # fmt: skip
    assert clock.sleeps == []
