"""Object storage behind one interface: `s3://bucket/prefix` (boto3) and `file:///path` (local directory).

    store = open_store("s3://bucket/datasets/legal/")     # or "file:///data/legal"
    store.write("index.json", b"...")                      # atomic: complete or invisible
    with store.open_writer("shard-00000.bin") as w:        # streaming (multipart) upload
        w.write(chunk)
    data = store.read("shard-00000.bin", start=0, end=4096)  # ranged read, [start, end)
    for obj in store.list("train/"): print(obj.key, obj.size)

Keys are relative to the store's root and use "/" separators. Transient faults are retried with bounded
exponential backoff; permanent ones raise `StorageError` subclasses whose message names the URI and the
likely fix, and never contains credentials.
"""

from pretrain_trainer.storage.base import (
    ObjectInfo,
    ObjectStore,
    StorageAccessDenied,
    StorageBucketNotFound,
    StorageError,
    StorageNotFound,
    StorageOptions,
    StorageUnavailable,
    open_store,
    read_uri,
    split_uri,
    write_uri,
)

__all__ = [
    "ObjectInfo",
    "ObjectStore",
    "StorageAccessDenied",
    "StorageBucketNotFound",
    "StorageError",
    "StorageNotFound",
    "StorageOptions",
    "StorageUnavailable",
    "open_store",
    "read_uri",
    "split_uri",
    "write_uri",
]
