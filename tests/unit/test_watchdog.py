"""The stall watchdog without a process group: it fires only after its timeout without progress, and its report
names the likely culprit from the peers' heartbeats."""

import threading
import time

from pretrain_trainer.watchdog import Heartbeat, HeartbeatBoard, StallWatchdog, culprit


class DictStore:
    """The part of the c10d store API the board uses."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def set(self, key: str, value: str) -> None:
        self.data[key] = value.encode()

    def check(self, keys: list[str]) -> bool:
        return all(k in self.data for k in keys)

    def get(self, key: str) -> bytes:
        return self.data[key]


def test_a_rank_whose_watchdog_went_quiet_is_named_with_its_host_and_last_step():
    now = 1000.0
    me = Heartbeat(0, "worker-0", 41, now - 5, now)
    peers = [me, Heartbeat(1, "worker-1", 41, now - 5, now - 4.5), Heartbeat(2, "worker-2", 41, now - 5, now - 0.2)]
    assert culprit(me, peers, now, quiet_s=2.0) == (
        "rank 1 on host worker-1 has not answered for 4 s (last step 41): its process is stopped or hung, "
        "or its host is lost"
    )


def test_with_every_watchdog_alive_the_rank_furthest_behind_is_named():
    now = 1000.0
    me = Heartbeat(0, "worker-0", 41, now - 5, now)
    peers = [me, Heartbeat(1, "worker-1", 40, now - 9, now - 0.1), Heartbeat(2, "worker-2", 41, now - 5, now)]
    assert culprit(me, peers, now, quiet_s=2.0).startswith("rank 1 on host worker-1 is behind at step 40")
    assert culprit(me, [me], now, quiet_s=2.0).startswith("rank 0 on host worker-0 itself made no progress")


def test_a_rank_that_never_published_a_heartbeat_is_named():
    now = 1000.0
    me = Heartbeat(0, "worker-0", 3, now - 5, now)
    assert culprit(me, [me, Heartbeat(2, "worker-2", 3, now - 5, now)], now, quiet_s=2.0, world_size=3) == (
        "rank 1 never published a heartbeat: its process is stopped or hung, or its host is lost"
    )


def test_the_watchdog_fires_once_after_the_timeout_without_progress_and_never_while_progressing():
    fired: list[tuple[float, str]] = []
    done = threading.Event()

    def on_stall(report: str) -> None:
        fired.append((time.monotonic(), report))
        done.set()

    store = DictStore()
    board = HeartbeatBoard(store, world_size=2)
    store.set("pretrain/heartbeat/1", Heartbeat(1, "worker-1", 7, time.time() - 60, time.time() - 60).to_json())
    with StallWatchdog(0.8, rank=0, board=board, on_stall=on_stall, host="worker-0", step=5) as dog:
        for step in range(6, 14):  # 1.6 s of steady progress: twice the timeout, no report
            time.sleep(0.2)
            dog.beat(step)
        assert fired == []
        last_beat = time.monotonic()
        assert done.wait(10)
    ((when, report),) = fired
    assert when - last_beat >= 0.8
    assert report.startswith("stalled: rank 0 on host worker-0 made no progress for 1 s after step 13")
    assert "rank 1 on host worker-1 has not answered for 6" in report and "s (last step 7)" in report
    assert Heartbeat.from_json(store.get("pretrain/heartbeat/0")).step == 13  # its own heartbeat was published


def test_a_store_that_does_not_answer_points_at_rank_zero():
    class DeadStore(DictStore):
        def check(self, keys: list[str]) -> bool:
            raise TimeoutError("store timeout")

    fired: list[str] = []
    with StallWatchdog(0.3, rank=1, board=HeartbeatBoard(DeadStore(), 2), on_stall=fired.append, host="w-1"):
        deadline = time.monotonic() + 10
        while not fired and time.monotonic() < deadline:
            time.sleep(0.05)
    assert fired and fired[0].endswith("the rendezvous store does not answer (TimeoutError): rank 0 is likely stalled")
