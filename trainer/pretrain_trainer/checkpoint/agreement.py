"""The cross-rank agreement behind every collective checkpoint step: each rank reports whether its part failed,
and all ranks raise if any did, so a storage error on one rank never leaves the others waiting in a barrier."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch.distributed as dist

from pretrain_trainer.checkpoint.layout import CheckpointError, CheckpointUnusable


def process_group_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def agree(
    uri: str,
    error: BaseException | None,
    payload: Any = None,
    *,
    distributed: bool,
    world_size: int,
    group: dist.ProcessGroup | None = None,
) -> list[Any]:
    """Exchange (failure, payload) between all ranks; every rank raises if any failed. Returns every rank's
    payload, in rank order (just `[payload]` when not `distributed`).

    The failing rank re-raises its own exception (a StorageError stays a StorageError); the others raise a
    CheckpointError naming `uri` and the first failed rank, a CheckpointUnusable when that rank found the
    checkpoint unusable, so that every rank falls back to an earlier one together. A collective (on `group`,
    default the default group) when `distributed`: every rank must call it, in the same order.
    """
    if not distributed:
        if error is not None:
            raise error
        return [payload]
    gathered: list[Any] = [None] * world_size
    mine = None if error is None else (f"{type(error).__name__}: {error}", isinstance(error, CheckpointUnusable))
    dist.all_gather_object(gathered, (mine, payload), group=group)
    if error is not None:
        raise error
    failed = [(rank, failure) for rank, (failure, _) in enumerate(gathered) if failure is not None]
    if failed:
        rank, (message, unusable) = failed[0]
        raise (CheckpointUnusable if unusable else CheckpointError)(uri, f"rank {rank} failed: {message}")
    return [item for _, item in gathered]


@contextlib.contextmanager
def quiet_single_process() -> Iterator[None]:
    """DCP warns on every single-process save/load that it assumes single-process; that is the intent here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.distributed is .*assuming the intent", category=UserWarning)
        yield


__all__ = ["agree", "process_group_active", "quiet_single_process"]
