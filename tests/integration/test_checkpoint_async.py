"""Background checkpoint saves (checkpoint/async_save.py): the loop is blocked only for the copy to host memory,
the checkpoint holds the state as it was at that moment even though training goes on during the upload, an upload
failure surfaces at the next save, and a process killed mid-save never leaves a checkpoint that resume would pick.

The kill test runs this file as a script (`python test_checkpoint_async.py crash URI`): it saves step 5, starts a
background save of step 10 whose upload never finishes, says so on stdout and waits to be SIGKILLed.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from pretrain_trainer.checkpoint import MANIFEST, CheckpointManager, step_dir
from pretrain_trainer.checkpoint import manager as manager_module
from pretrain_trainer.checkpoint.async_save import CheckpointSaver
from pretrain_trainer.storage import StorageError
from tests.integration.test_checkpoint import assert_same_optimizer, assert_same_params, train, trainables
from tests.support.checkout import checkout_pythonpath

RELEASES: list[threading.Event] = []


def gate_uploads(monkeypatch: pytest.MonkeyPatch, fail: BaseException | None = None) -> tuple[threading.Event, ...]:
    """Hold every upload until the returned `release` is set (then raise `fail`, if given); `started` is set when
    an upload begins, i.e. once the background thread has written the DCP files from its copy."""
    started, release = threading.Event(), threading.Event()
    RELEASES.append(release)
    real: Callable[..., Any] = manager_module.upload_dir

    def held(store: Any, local: str) -> Any:
        started.set()
        release.wait(60)
        if fail is not None:
            raise fail
        return real(store, local)

    monkeypatch.setattr(manager_module, "upload_dir", held)
    return started, release


@pytest.fixture
def root(tmp_path: Path) -> str:
    return (tmp_path / "ckpt").as_uri()


@pytest.fixture
def saver(root: str) -> Iterator[CheckpointSaver]:
    saver = CheckpointSaver(CheckpointManager(root))
    yield saver
    for release in RELEASES:  # a held upload goes on into tmp_path, and the thread ends
        release.set()
    with contextlib.suppress(Exception):  # a test's failed save was already checked
        saver.close()


def manifest_exists(manager: CheckpointManager, step: int) -> bool:
    return manager.store.exists(f"{step_dir(step)}/{MANIFEST}")


def test_the_checkpoint_holds_the_state_at_save_time_while_training_goes_on_during_the_upload(root, saver, monkeypatch):
    model, optimizer, scheduler = trainables(0)
    train(model, optimizer, scheduler, 2, data_seed=1)
    # Copies: the optimizer's state_dict() shares the tensors the next steps change in place.
    at_save = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    started, release = gate_uploads(monkeypatch)
    blocked = saver.save(2, model, optimizer, scheduler, {"step": 2})
    assert blocked >= 0 and saver.in_flight  # save() returned; the upload is still held
    assert started.wait(30), "the background thread never reached the upload"
    train(model, optimizer, scheduler, 3, data_seed=2)  # the loop goes on while the upload is held
    assert not manifest_exists(saver.manager, 2) and saver.poll() is None
    release.set()
    saved = saver.wait()
    assert saved is not None and (saved.step, saved.uri) == (2, saver.manager.checkpoint_uri(2))
    assert saver.poll() is None and saver.wait() is None  # reported once

    fresh, fresh_optimizer, fresh_scheduler = trainables(1)
    assert CheckpointManager(root).load(2, fresh, fresh_optimizer, fresh_scheduler) == {"step": 2}
    assert_same_params(fresh, at_save[0])
    assert_same_optimizer(fresh_optimizer.state_dict(), at_save[1])


def test_a_save_interrupted_after_staging_is_never_resumed_from(root, saver, monkeypatch):
    model, optimizer, scheduler = trainables(0)
    saver.manager.save(5, model, optimizer, scheduler, {"step": 5})
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    started, _ = gate_uploads(monkeypatch)
    train(model, optimizer, scheduler, 1, data_seed=3)
    saver.save(10, model, optimizer, scheduler, {"step": 10})
    assert started.wait(30)
    # Another process (the restarted gang) looks while step 10's files are staged but not uploaded or listed.
    resumer = CheckpointManager(root)
    assert resumer.latest() == 5
    fresh = trainables(1)
    resumed = resumer.resume(*fresh)
    assert resumed is not None and resumed.step == 5
    assert_same_params(fresh[0], expected)


def test_a_failed_background_upload_raises_at_the_next_save_and_publishes_nothing(root, saver, monkeypatch):
    model, optimizer, scheduler = trainables(0)
    _, release = gate_uploads(monkeypatch, fail=StorageError(root, "connection reset"))
    saver.save(3, model, optimizer, scheduler, {"step": 3})
    release.set()
    with pytest.raises(StorageError, match="connection reset"):
        saver.save(4, model, optimizer, scheduler, {"step": 4})
    assert CheckpointManager(root).latest() is None
    assert not manifest_exists(saver.manager, 3)


def test_a_non_json_trainer_state_is_refused_before_anything_is_staged(saver):
    model, optimizer, scheduler = trainables(0)
    with pytest.raises(TypeError, match="trainer_state must be JSON-serialisable"):
        saver.save(1, model, optimizer, scheduler, {"bad": object()})
    assert not saver.in_flight


def test_in_place_mode_saves_before_returning_and_reports_the_save_once(root):
    saver = CheckpointSaver(CheckpointManager(root), background=False)
    model, optimizer, scheduler = trainables(0)
    saver.save(7, model, optimizer, scheduler, {"step": 7})
    assert manifest_exists(saver.manager, 7) and not saver.in_flight
    saved = saver.poll()
    assert saved is not None and saved.step == 7
    assert saver.poll() is None and saver.close() is None


@pytest.mark.slow
def test_a_process_killed_during_a_background_save_leaves_nothing_resume_picks(root):
    proc = subprocess.Popen(
        [sys.executable, __file__, "crash", root],
        env={**os.environ, "PYTHONPATH": checkout_pythonpath(), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "uploading step 10":
                break
        assert lines and lines[-1].strip() == "uploading step 10", "".join(lines)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    manager = CheckpointManager(root)
    assert manager.store.list(step_dir(10) + "/"), "the killed save left no files: nothing was tested"
    assert manager.latest() == 5
    resumed = manager.resume(*trainables(1))
    assert resumed is not None and resumed.step == 5
    assert manager.clean_up() == [10]  # the killed save's partial folder is removed


def crash(uri: str) -> None:
    """Save step 5, then start a background save of step 10 whose upload hangs after its first file."""
    manager = CheckpointManager(uri)
    model, optimizer, scheduler = trainables(0)
    manager.save(5, model, optimizer, scheduler, {"step": 5})
    hold = threading.Event()

    def one_file_then_hang(store: Any, local: str) -> Any:
        first = sorted(os.listdir(local))[0]
        store.write(first, Path(local, first).read_bytes())
        print("uploading step 10", flush=True)
        hold.wait()

    manager_module.upload_dir = one_file_then_hang  # type: ignore[assignment]
    saver = CheckpointSaver(manager)
    train(model, optimizer, scheduler, 1, data_seed=3)
    saver.save(10, model, optimizer, scheduler, {"step": 10})
    hold.wait()


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "crash":
        crash(sys.argv[2])
