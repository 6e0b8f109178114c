"""The readers that loader_throughput.py compares, each run in a fresh process of its own:

    python benchmarks/loader_readers.py READER CONFIG_JSON     # prints one JSON line of measurements

READER is one of ceiling, ours, litdata, mds (measure one epoch), ranks (8 ranks of ours at a fixed step
time, for the data-wait figure), prepare-litdata and prepare-mds (write those formats from the token file).
A fresh process per run means a cold cache, a clean peak RSS (`ru_maxrss`) and CPU time that is the reader's
own: the S3 server is another process. CPU and time are taken from just before the reader is built; the peak
RSS is the process's, imports included (torch for LitData and MDS).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

MiB = 1 << 20


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _s3_env(cfg: dict[str, Any]) -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=cfg["endpoint"],
        S3_ENDPOINT_URL=cfg["endpoint"],  # MosaicML Streaming's variable
    )


class Clock:
    """Time, CPU and tokens from the moment the reader is built; the time the first batch arrived."""

    def __init__(self) -> None:
        self.start, self.cpu0, self.tokens, self.first = time.perf_counter(), _cpu(), 0, None

    def batch(self, tokens: int) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.start
        self.tokens += tokens

    def result(self, **extra: Any) -> dict[str, Any]:
        return {
            "seconds": time.perf_counter() - self.start,
            "cpu_seconds": _cpu() - self.cpu0,
            "tokens": self.tokens,
            "first_batch_s": self.first,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **extra,
        }


def ceiling(cfg: dict[str, Any]) -> dict[str, Any]:
    """Plain boto3 ranged GETs of `block_mib` over every shard object, `threads` at a time: no checks, no batches.
    Timed from building the boto3 client (about 0.1 s here), as the readers' times include building theirs."""
    import boto3
    from botocore.config import Config

    clock = Clock()  # from building the client, as every reader's time includes building its own
    client = boto3.client(
        "s3", endpoint_url=cfg["endpoint"], config=Config(max_pool_connections=64, s3={"addressing_style": "path"})
    )
    bucket, prefix = cfg["ours"].removeprefix("s3://").split("/", 1)
    objects = [o for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"] if o["Key"].endswith(".bin")]
    step = cfg["block_mib"] * MiB
    ranges = [(o["Key"], lo, min(lo + step, o["Size"])) for o in objects for lo in range(0, o["Size"], step)]

    def get(item: tuple[str, int, int]) -> int:
        key, lo, hi = item
        body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={lo}-{hi - 1}")["Body"]
        with body:
            return len(body.read())

    with ThreadPoolExecutor(cfg["threads"]) as pool:
        for nbytes in pool.map(get, ranges):
            clock.batch(nbytes // 2)
    return clock.result()


def _our_loader(cfg: dict[str, Any], cache_dir: str, **kw: Any) -> Any:
    from pretrain_trainer.data.loader import StreamingLoader
    from pretrain_trainer.data.shards import ShardSet
    from pretrain_trainer.storage import StorageOptions

    options = StorageOptions(
        endpoint_url=cfg["endpoint"], region="us-east-1", access_key_id="bench", secret_access_key="bench-secret"
    )
    return StreamingLoader(
        ShardSet.open(cfg["ours"], options),
        sequence_length=cfg["seq"],
        causal=True,
        block_bytes=cfg["block_mib"] * MiB,
        window_blocks=cfg["window_blocks"],
        cache_dir=cache_dir,
        cache_bytes=cfg["cache_mib"] * MiB,
        threads=cfg["threads"],
        **kw,
    )


def ours(cfg: dict[str, Any]) -> dict[str, Any]:
    import pretrain_trainer.data.loader
    import pretrain_trainer.storage.s3  # noqa: F401  (imports before the clock starts, as for the others)

    with tempfile.TemporaryDirectory(dir="/dev/shm") as cache:
        clock = Clock()
        with _our_loader(cfg, cache, global_batch_size=cfg["batch"], epochs=1) as loader:
            for batch in loader:
                clock.batch(batch.shape[0] * cfg["seq"])
        return clock.result()


def _rank(cfg: dict[str, Any], rank: int, cache: str, results: Any) -> None:
    world = cfg["ranks"]
    with _our_loader(
        cfg, cache, global_batch_size=cfg["batch"] * world, rank=rank, world_size=world, local_rank=rank, epochs=1
    ) as loader:
        clock = Clock()
        started = None
        for batch in loader:
            clock.batch(batch.shape[0] * cfg["seq"])
            if started is None:  # the steady state starts after the first batch (the cold start is reported apart)
                started, first_wait = time.perf_counter(), loader.wait_seconds
            time.sleep(cfg["step_s"])  # the training step this rank would run
        steady = time.perf_counter() - started
        results.put(clock.result(steady_wait_share=(loader.wait_seconds - first_wait) / steady, steady_s=steady))


def ranks(cfg: dict[str, Any]) -> dict[str, Any]:
    """`ranks` processes of one node sharing one cache, each sleeping `step_s` per batch; the worst rank's wait."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as cache:
        procs = [ctx.Process(target=_rank, args=(cfg, r, cache, results)) for r in range(cfg["ranks"])]
        for p in procs:
            p.start()
        got = [results.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
    worst = max(got, key=lambda r: r["steady_wait_share"])
    return {**worst, "tokens": sum(r["tokens"] for r in got), "first_batch_s": max(r["first_batch_s"] for r in got)}


def _tokens(cfg: dict[str, Any]) -> np.ndarray:
    return np.load(cfg["token_file"], mmap_mode="r")


def _litdata_items(index: int, token_file: str = "", per_item: int = 0) -> Any:
    import torch

    tokens = np.load(token_file, mmap_mode="r")
    yield torch.from_numpy(np.array(tokens[index * per_item : (index + 1) * per_item], dtype=np.int16))


def prepare_litdata(cfg: dict[str, Any]) -> dict[str, Any]:
    """LitData's optimize() with TokensLoader, into a local folder the parent uploads."""
    from functools import partial

    from litdata import optimize
    from litdata.streaming.item_loader import TokensLoader

    per_item = 1 << 20
    items = -(-len(_tokens(cfg)) // per_item)
    optimize(
        fn=partial(_litdata_items, token_file=cfg["token_file"], per_item=per_item),
        inputs=list(range(items)),
        output_dir=cfg["out"],
        chunk_bytes=f"{cfg['block_mib'] * 2}MB",
        item_loader=TokensLoader(),
        num_workers=1,
        mode="overwrite",
    )
    return {"ok": True}


def litdata(cfg: dict[str, Any]) -> dict[str, Any]:
    from litdata import StreamingDataLoader, StreamingDataset
    from litdata.streaming import downloader
    from litdata.streaming.item_loader import TokensLoader

    # LitData prefetches chunks through obstore, which refuses plain http unless told; the loopback endpoint is
    # http (a real object store would be https and need no change).
    downloader._OBSTORE_CLIENT_OPTIONS = {**downloader._OBSTORE_CLIENT_OPTIONS, "allow_http": "true"}

    with tempfile.TemporaryDirectory(dir="/dev/shm") as cache:
        clock = Clock()
        dataset = StreamingDataset(
            input_dir=cfg["litdata"],
            cache_dir=cache,
            item_loader=TokensLoader(block_size=cfg["seq"] + 1),
            shuffle=True,
            drop_last=True,
            storage_options={"endpoint_url": cfg["endpoint"]},
        )
        for batch in StreamingDataLoader(dataset, batch_size=cfg["batch"], num_workers=0, drop_last=True):
            clock.batch(batch.shape[0] * cfg["seq"])
        return clock.result()


def _import_streaming() -> Any:
    """MosaicML Streaming imports torchvision for its vision datasets. PyPI's torchvision 0.28.0 is built against
    CUDA torch and cannot load next to the CPU torch 2.13.0 (its _C.so needs libtorch_cuda.so); the token path
    uses none of it, so when torchvision fails to import, stand-ins for the two names streaming.vision imports
    let `import streaming` succeed."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        import importlib.machinery
        import types

        names = ("torchvision", "torchvision.datasets", "torchvision.transforms", "torchvision.transforms.functional")
        stub = {name: types.ModuleType(name) for name in names}
        for name, module in stub.items():
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        stub["torchvision.datasets"].VisionDataset = object
        stub["torchvision.transforms.functional"].to_tensor = None
        for name in list(sys.modules):
            if name.startswith("torchvision"):
                del sys.modules[name]
        sys.modules.update(stub)
    import streaming

    return streaming


def prepare_mds(cfg: dict[str, Any]) -> dict[str, Any]:
    MDSWriter = _import_streaming().MDSWriter

    tokens, window = _tokens(cfg), cfg["seq"] + 1
    with MDSWriter(out=cfg["out"], columns={"tokens": "ndarray:uint16"}, size_limit=cfg["block_mib"] * MiB) as out:
        for start in range(0, len(tokens) - window + 1, cfg["seq"]):
            out.write({"tokens": np.asarray(tokens[start : start + window])})
    return {"ok": True}


def mds(cfg: dict[str, Any]) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    StreamingDataset = _import_streaming().StreamingDataset

    with tempfile.TemporaryDirectory(dir="/dev/shm") as cache:
        clock = Clock()
        dataset = StreamingDataset(remote=cfg["mds"], local=cache, batch_size=cfg["batch"], shuffle=True)
        for batch in DataLoader(dataset, batch_size=cfg["batch"], num_workers=0, drop_last=True):
            clock.batch(batch["tokens"].shape[0] * cfg["seq"])
        return clock.result()


READERS = {
    "ceiling": ceiling,
    "ours": ours,
    "litdata": litdata,
    "mds": mds,
    "ranks": ranks,
    "prepare-litdata": prepare_litdata,
    "prepare-mds": prepare_mds,
}

if __name__ == "__main__":
    config = json.loads(sys.argv[2])
    _s3_env(config)
    sys.path.insert(0, str(Path(__file__).parent))
    print(json.dumps(READERS[sys.argv[1]](config)), flush=True)
