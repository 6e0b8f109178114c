"""`S3Store`: the ObjectStore interface over boto3, for AWS S3 and S3-compatible stores (MinIO, moto)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import boto3
import botocore.exceptions as bce
import botocore.session
from botocore.config import Config

from pretrain_trainer.storage.base import (
    ObjectInfo,
    ObjectStore,
    ObjectWriter,
    StorageAccessDenied,
    StorageBucketNotFound,
    StorageError,
    StorageNotFound,
    StorageOptions,
    check_key,
    check_range,
    redact_url,
)
from pretrain_trainer.storage.retry import call_with_retry, client_error_code, error_label

log = logging.getLogger("pretrain_trainer.storage")

T = TypeVar("T")

# The streaming loader reads from dozens of threads through one client; botocore's default pool of 10
# would serialise them and log "connection pool is full" warnings.
MAX_POOL_CONNECTIONS = 64
MAX_PARTS = 10_000  # S3's limit per multipart upload

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_ACCESS_HINTS = {
    "InvalidAccessKeyId": "the access key id is unknown to this endpoint. Check AWS_ACCESS_KEY_ID (or the "
    "profile / IRSA role) belongs to this endpoint",
    "SignatureDoesNotMatch": "the request signature did not match: the secret key does not belong to the "
    "access key id, or the region is wrong. Check AWS_SECRET_ACCESS_KEY and AWS_REGION",
    "ExpiredToken": "the session token has expired. Refresh the temporary credentials",
    "TokenRefreshRequired": "the session token has expired. Refresh the temporary credentials",
    "InvalidToken": "the session token is malformed or invalid. Check AWS_SESSION_TOKEN",
    "RequestTimeTooSkewed": "this machine's clock differs too much from the server's. Synchronise the clock",
}


_loader_lock = threading.Lock()
_loader: Any = None


def _shared_loader() -> Any:
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = botocore.session.Session().get_component("data_loader")
        return _loader


def make_client(options: StorageOptions) -> Any:
    """A boto3 S3 client configured for our retry policy, timeouts and addressing style."""
    style = options.addressing_style
    if style == "auto":
        # Virtual-hosted addressing needs DNS for <bucket>.<endpoint>, which custom endpoints rarely have.
        style = "path" if options.endpoint_url else "auto"
    config = Config(
        region_name=options.region,
        connect_timeout=options.connect_timeout_s,
        read_timeout=options.read_timeout_s,
        max_pool_connections=MAX_POOL_CONNECTIONS,
        # One attempt per botocore call: retry.call_with_retry is the only policy, and unlike botocore's
        # it also covers reading the response body.
        retries={"total_max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": style},
        user_agent_extra="pretrain-operator",
    )
    # A private Session per client, because boto3's default session is not safe to share across threads
    # and would cache credentials resolved from an environment that may since have changed. The JSON
    # service models, though, are immutable: sharing their loader cuts client creation from ~130 ms to
    # ~25 ms, which matters for one-off read_uri/write_uri calls.
    core = botocore.session.Session()
    core.register_component("data_loader", _shared_loader())
    session = boto3.session.Session(botocore_session=core)
    return session.client(
        "s3",
        endpoint_url=options.endpoint_url,
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        aws_session_token=options.session_token,
        config=config,
    )


class S3Store(ObjectStore):
    """Objects under `s3://bucket/prefix`. Thread-safe: one boto3 client, shared with `child` stores."""

    def __init__(
        self, bucket: str, prefix: str = "", options: StorageOptions | None = None, *, client: Any = None
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(f"s3://{bucket}", self.prefix)
        self.options = options if options is not None else StorageOptions.from_env()
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client if client is not None else make_client(self.options)
        self.endpoint = redact_url(self.client.meta.endpoint_url)
        if client is None:
            log.debug(
                "opened %s endpoint=%s region=%s addressing=%s",
                self.uri,
                self.endpoint,
                self.client.meta.region_name,
                self.client.meta.config.s3.get("addressing_style"),
            )

    # -- plumbing

    def _key(self, key: str) -> str:
        check_key(self.uri, key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, op: Callable[[], T], uri: str, action: str, permission: str) -> T:
        return call_with_retry(
            op,
            uri=uri,
            action=action,
            options=self.options,
            translate=lambda exc: self._translate(exc, uri, action, permission),
            unavailable_hint=f"Check that the S3 endpoint {self.endpoint} is reachable and healthy; a longer "
            "outage can be waited out by raising spec.storage.retryTimeoutSeconds.",
        )

    def _scrub(self, text: str) -> str:
        # Servers never echo the secret (SigV4 does not send it), but a message must not be the one place
        # where that assumption is wrong.
        for secret in (self.options.secret_access_key, self.options.session_token):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _translate(self, exc: Exception, uri: str, action: str, permission: str) -> StorageError | None:
        at = f"at endpoint {self.endpoint}"
        missing_bucket = f"no such bucket '{self.bucket}' {at}. Create the bucket or fix the URI."
        if isinstance(exc, bce.ClientError):
            code, status = client_error_code(exc)
            label = error_label(exc)
            if code == "NoSuchBucket":
                return StorageBucketNotFound(uri, missing_bucket)
            if code in _NOT_FOUND_CODES:
                # HEAD responses have no body, so a 404 does not say whether the key or the bucket is
                # missing; one extra request on the error path makes the message point at the right fix.
                if action == "HeadObject" and not self._bucket_exists():
                    return StorageBucketNotFound(uri, missing_bucket)
                return StorageNotFound(uri, f"no such object {at}. Check the key, or write the object first.")
            if code == "NoSuchUpload":
                return StorageNotFound(
                    uri, f"the multipart upload vanished {at} (aborted or expired). Write the object again."
                )
            if status == 403 or code in _ACCESS_HINTS or code in ("AccessDenied", "AllAccessDisabled"):
                hint = _ACCESS_HINTS.get(code) or (
                    f"the credentials in use may not {permission} in bucket '{self.bucket}'. Check the "
                    "credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE / the pod's IRSA role) and the bucket "
                    "and IAM policies"
                )
                return StorageAccessDenied(uri, self._scrub(f"{action} denied ({label}) {at}: {hint}."))
            message = (exc.response.get("Error", {}).get("Message") or "no details").rstrip(".")
            return StorageError(
                uri,
                self._scrub(
                    f"{action} rejected with {label} {at}: {message}. Check the request against the "
                    "bucket's configuration."
                ),
            )
        if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError, bce.CredentialRetrievalError)):
            return StorageAccessDenied(
                uri,
                f"no usable S3 credentials for {action} ({type(exc).__name__}). Set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the pod an IRSA role.",
            )
        if isinstance(exc, bce.SSLError):  # configuration, not an outage: permanent (see retry._PERMANENT_TYPES)
            return StorageError(
                uri,
                f"TLS handshake with {self.endpoint} failed during {action}. Check the CA bundle "
                "(AWS_CA_BUNDLE), or use http:// if the endpoint does not speak TLS.",
            )
        if isinstance(exc, bce.BotoCoreError):
            return StorageError(uri, self._scrub(f"{action} failed {at}: {type(exc).__name__}: {exc}."))
        return None

    def _bucket_exists(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except bce.ClientError as exc:
            return client_error_code(exc)[0] not in ("404", "NoSuchBucket", "NotFound")
        except Exception:  # unknown: let the caller report the original error
            return True
        return True

    # -- reads

    def read(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        uri = self.uri_for(key)
        start, end = check_range(uri, start, end)
        if end == start:
            return b""  # an HTTP Range cannot express an empty range
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        ranged = start > 0 or end is not None
        if ranged:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"

        def op() -> bytes:
            try:
                response = self.client.get_object(**request)
            except bce.ClientError as exc:
                if client_error_code(exc)[0] == "InvalidRange":
                    return b""  # start is at or past the end: slice semantics, like LocalStore
                raise
            body = response["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            if ranged and not response.get("ContentRange"):
                # The server ignored Range and sent the whole object; honour the contract anyway.
                data = data[start:end]
            return data

        return self._call(op, uri, "GetObject", "s3:GetObject")

    def size(self, key: str) -> int:
        request = {"Bucket": self.bucket, "Key": self._key(key)}
        response = self._call(
            lambda: self.client.head_object(**request), self.uri_for(key), "HeadObject", "s3:GetObject"
        )
        return int(response["ContentLength"])

    def exists(self, key: str) -> bool:
        request = {"Bucket": self.bucket, "Key": self._key(key)}

        def op() -> bool:
            try:
                self.client.head_object(**request)
            except bce.ClientError as exc:
                if client_error_code(exc)[0] in _NOT_FOUND_CODES:
                    return False
                raise
            return True

        return self._call(op, self.uri_for(key), "HeadObject", "s3:GetObject")

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": root + prefix}
        uri = f"{self.uri}/{prefix}" if prefix else self.uri
        found: list[ObjectInfo] = []
        # Page by page rather than through boto3's paginator so that a transient fault retries only the
        # page it hit, not a listing of a million shards from the start.
        while True:
            page = self._call(lambda: self.client.list_objects_v2(**request), uri, "ListObjectsV2", "s3:ListBucket")
            for obj in page.get("Contents", ()):
                found.append(ObjectInfo(key=obj["Key"][len(root) :], size=int(obj["Size"])))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
            request["ContinuationToken"] = token
        found.sort(key=lambda info: info.key)
        return found

    # -- writes

    def write(self, key: str, data: bytes) -> None:
        body = bytes(data)  # a retry must be able to send the same bytes again
        request = {"Bucket": self.bucket, "Key": self._key(key), "Body": body}
        self._call(lambda: self.client.put_object(**request), self.uri_for(key), "PutObject", "s3:PutObject")

    @contextlib.contextmanager
    def open_writer(self, key: str) -> Iterator[ObjectWriter]:
        writer = _MultipartWriter(self, key)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        try:
            writer.finish()
        except BaseException:
            writer.abort()
            raise

    def delete(self, key: str) -> None:
        request = {"Bucket": self.bucket, "Key": self._key(key)}
        self._call(lambda: self.client.delete_object(**request), self.uri_for(key), "DeleteObject", "s3:DeleteObject")

    def sweep(self, prefix: str = "") -> int:
        root = f"{self.prefix}/" if self.prefix else ""
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": root + prefix}
        uri = self.uri_for(prefix) if prefix else self.uri
        uploads: list[tuple[str, str]] = []
        while True:
            page = self._call(
                lambda: self.client.list_multipart_uploads(**request), uri, "ListMultipartUploads", "s3:ListBucket"
            )
            uploads.extend((up["Key"], up["UploadId"]) for up in page.get("Uploads", ()))
            if not page.get("IsTruncated"):
                break
            request.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])
        for key, upload_id in uploads:
            abort = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id}
            self._call(
                lambda abort=abort: self.client.abort_multipart_upload(**abort),
                f"s3://{self.bucket}/{key}",
                "AbortMultipartUpload",
                "s3:AbortMultipartUpload",
            )
        return len(uploads)

    def child(self, prefix: str) -> S3Store:
        return S3Store(self.bucket, self._key(prefix.strip("/")), self.options, client=self.client)

    def create_bucket(self) -> bool:
        """Create the bucket if it does not exist; True if this call created it."""
        request: dict[str, Any] = {"Bucket": self.bucket}
        region = self.client.meta.region_name
        if region and region not in ("us-east-1", "aws-global"):
            request["CreateBucketConfiguration"] = {"LocationConstraint": region}

        def op() -> bool:
            try:
                self.client.create_bucket(**request)
            except bce.ClientError as exc:
                code = client_error_code(exc)[0]
                if code == "BucketAlreadyOwnedByYou":
                    return False
                if code == "BucketAlreadyExists":
                    # Some stores say this for our own bucket too; if we can reach it, it is ours to use.
                    self.client.head_bucket(Bucket=self.bucket)
                    return False
                raise
            return True

        return self._call(op, f"s3://{self.bucket}", "CreateBucket", "s3:CreateBucket")


class _MultipartWriter:
    """Buffers writes into parts; a single PUT if the object turns out to fit in one part."""

    def __init__(self, store: S3Store, key: str) -> None:
        self._store = store
        self._uri = store.uri_for(key)
        self._request = {"Bucket": store.bucket, "Key": store._key(key)}
        self._part_size = store.options.part_size_bytes
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._size = 0
        self._done = False

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self._done:
            raise ValueError(f"{self._uri}: write() after the object was published or discarded")
        view = memoryview(data).cast("B")
        self._buffer += view
        self._size += view.nbytes
        # Strictly greater: an object of exactly one part still goes up as a single PUT, and the last
        # multipart part is never empty.
        while len(self._buffer) > self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._upload_part(part)
        return view.nbytes

    def _call(self, op: Callable[[], T], action: str) -> T:
        return self._store._call(op, self._uri, action, "s3:PutObject")

    def _upload_part(self, part: bytes) -> None:
        client = self._store.client
        if self._upload_id is None:
            response = self._call(lambda: client.create_multipart_upload(**self._request), "CreateMultipartUpload")
            self._upload_id = response["UploadId"]
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(
                self._uri,
                f"object exceeds {MAX_PARTS} parts of {self._part_size} bytes. Raise StorageOptions.part_size_bytes.",
            )
        request = {**self._request, "UploadId": self._upload_id, "PartNumber": number, "Body": part}
        response = self._call(lambda: client.upload_part(**request), "UploadPart")
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})

    def finish(self) -> None:
        if self._done:
            return
        client = self._store.client
        if self._upload_id is None:
            request = {**self._request, "Body": bytes(self._buffer)}
            self._call(lambda: client.put_object(**request), "PutObject")
        else:
            if self._buffer:
                self._upload_part(bytes(self._buffer))
            self._complete()
        self._buffer = bytearray()
        self._done = True

    def _complete(self) -> None:
        client = self._store.client
        request = {**self._request, "UploadId": self._upload_id, "MultipartUpload": {"Parts": self._parts}}
        attempts = 0

        def op() -> None:
            nonlocal attempts
            attempts += 1
            try:
                client.complete_multipart_upload(**request)
            except bce.ClientError as exc:
                # A retried Complete whose first try succeeded but lost its response finds the upload
                # gone; the object is there, so that is success, not an error.
                if attempts > 1 and client_error_code(exc)[0] == "NoSuchUpload" and self._published():
                    return
                raise

        self._call(op, "CompleteMultipartUpload")

    def _published(self) -> bool:
        try:
            head = self._store.client.head_object(**self._request)
        except bce.ClientError:
            return False
        return int(head["ContentLength"]) == self._size

    def abort(self) -> None:
        """Discard everything; never raises, so the error that caused the abort is the one reported."""
        self._done = True
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        client = self._store.client
        request = {**self._request, "UploadId": self._upload_id}
        try:
            self._call(lambda: client.abort_multipart_upload(**request), "AbortMultipartUpload")
        except Exception as exc:
            log.warning(
                "could not abort multipart upload uri=%s upload_id=%s error=%s; its parts stay billed until "
                "a lifecycle rule (AbortIncompleteMultipartUpload) removes them",
                self._uri,
                self._upload_id,
                type(exc).__name__,
            )
        self._upload_id = None
