"""The process group, from the environment that torchrun (or the operator's pods, or `pretrainjob run --local`)
sets: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT. NCCL on GPUs, gloo on CPUs; a process started
without them is a world of one.

Workers on Kubernetes can start before the rendezvous host's DNS record exists; instead of an init container that
loops forever, `launch.wait_for_host` retries the lookup with backoff until a deadline and then fails with a
message that says what to check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from pretrain_trainer.contract import MASTER_ADDR, MASTER_PORT, RENDEZVOUS_PORT
from pretrain_trainer.launch import wait_for_host

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = RENDEZVOUS_PORT
    # The launcher's run id (TORCHELASTIC_RUN_ID): the store's keys live under it, so a new rendezvous round of an
    # in-place restart never reads a previous round's keys, even from a store that has not gone yet.
    run_id: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DistEnv:
        env = os.environ if environ is None else environ
        try:
            return cls(
                rank=int(env.get("RANK", 0)),
                local_rank=int(env.get("LOCAL_RANK", 0)),
                world_size=int(env.get("WORLD_SIZE", 1)),
                master_addr=env.get(MASTER_ADDR, "127.0.0.1"),
                master_port=int(env.get(MASTER_PORT, RENDEZVOUS_PORT)),
                run_id=env.get("TORCHELASTIC_RUN_ID", ""),
            )
        except ValueError as err:
            raise ValueError(f"RANK/LOCAL_RANK/WORLD_SIZE/MASTER_PORT must be integers: {err}") from err

    @property
    def is_main(self) -> bool:
        return self.rank == 0


RENDEZVOUS_TIMEOUT_S = 1800.0  # pods of one gang may start minutes apart (image pulls, node scale-up)


def init(env: DistEnv, collective_timeout_s: float = 1800.0) -> torch.device:
    """Join the process group (if the world has more than one process) and return this process's device.

    Two timeouts: joining waits up to RENDEZVOUS_TIMEOUT_S for every rank to arrive (the store's timeout), while a
    collective fails after `collective_timeout_s` (the group's): a backstop behind the stall watchdog, which is
    meant to fire first and say who stalled."""
    if torch.cuda.is_available():
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if env.world_size > 1 and not dist.is_initialized():
        wait_for_host(env.master_addr)
        # Every rank has connected once the store is built, so the group's own set-up (within the collective
        # timeout) starts on all ranks at once.
        store = dist.TCPStore(
            env.master_addr,
            env.master_port,
            env.world_size,
            is_master=env.rank == 0,
            timeout=timedelta(seconds=RENDEZVOUS_TIMEOUT_S),
            wait_for_workers=True,
        )
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            store=dist.PrefixStore(env.run_id, store) if env.run_id else store,
            rank=env.rank,
            world_size=env.world_size,
            timeout=timedelta(seconds=collective_timeout_s),
        )
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
