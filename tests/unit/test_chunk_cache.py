import multiprocessing
import os
import signal

import pytest

from pretrain_trainer.data.chunk_cache import CacheFullError, ChunkCache

KEYS = [f"k{i}" for i in range(6)]


def _payload(key: str, size: int = 1000) -> bytes:
    return (key.encode() * size)[:size]


def _rank(directory: str, barrier, results) -> None:
    """One 'rank': wait for the others, then read every chunk; report how many it downloaded itself."""
    cache = ChunkCache(directory, 1 << 20)
    barrier.wait()
    for key in KEYS:
        assert bytes(cache.get(key, 1000, lambda key=key: _payload(key))) == _payload(key)
    results.put(cache.fetches)


def test_ranks_of_one_node_download_each_chunk_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(str(tmp_path), barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sum(results.get(timeout=5) for _ in procs) == len(KEYS)


def _killed_download(directory: str) -> None:
    cache = ChunkCache(directory, 1 << 20)

    def die() -> bytes:
        os.kill(os.getpid(), signal.SIGKILL)  # mid-download: the reserved part file is all there is
        raise AssertionError("unreachable")

    cache.get("victim", 1000, die)


def test_a_killed_download_leaves_nothing_that_is_later_used(tmp_path):
    proc = multiprocessing.get_context("fork").Process(target=_killed_download, args=(str(tmp_path),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    [left] = [p.name for p in tmp_path.glob("victim*")]
    assert left.endswith(".part")
    cache = ChunkCache(tmp_path, 1 << 20)
    fetched = []
    got = cache.get("victim", 1000, lambda: fetched.append(1) or _payload("victim"))
    assert bytes(got) == _payload("victim") and fetched == [1], "fetched again, not read from the part"
    assert [p.name for p in tmp_path.glob("victim*")] == ["victim.chunk"], "the orphaned part is gone"


def test_the_bound_holds_and_the_least_recently_used_chunk_goes_first(tmp_path):
    cache = ChunkCache(tmp_path, 3500)
    for key in KEYS[:3]:
        cache.get(key, 1000, lambda key=key: _payload(key))
    for age, key in enumerate(KEYS[:3]):
        os.utime(tmp_path / f"{key}.chunk", (age, age))
    cache.get("k0", 1000, lambda: pytest.fail("k0 is cached"))  # a hit makes k0 the most recent
    cache.get("k3", 1000, lambda: _payload("k3"))
    assert sorted(p.name for p in tmp_path.glob("*.chunk")) == ["k0.chunk", "k2.chunk", "k3.chunk"]
    for key in KEYS[4:]:
        cache.get(key, 1000, lambda key=key: _payload(key))
        assert cache.used_bytes() <= 3500
    assert len(list(tmp_path.glob("*.chunk"))) == 3


def test_a_mapped_chunk_stays_readable_after_another_process_evicts_it(tmp_path):
    cache = ChunkCache(tmp_path, 1000)
    held = cache.get("a", 1000, lambda: _payload("a"))
    cache.get("b", 1000, lambda: _payload("b"))  # evicts a
    assert not (tmp_path / "a.chunk").exists()
    assert bytes(held) == _payload("a")


def test_a_chunk_larger_than_the_bound_is_refused(tmp_path):
    with pytest.raises(CacheFullError, match="does not fit a cache bound of 500 bytes"):
        ChunkCache(tmp_path, 500).get("big", 1000, lambda: _payload("big"))
