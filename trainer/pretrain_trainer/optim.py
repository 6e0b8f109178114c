"""Optimizers and the learning-rate schedule.

AdamW is PyTorch's (fused kernels on CUDA). LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes", Algorithm 2) is implemented here: no maintained package provides it without pulling
torchvision. Weight decay applies to matrices only; biases, norms and other vectors are left alone, as in BERT and
GPT-2 training recipes.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from pretrain_trainer.config import OptimizerSpec


class Lamb(torch.optim.Optimizer):
    """LAMB: Adam's update, with decoupled weight decay, rescaled per tensor by the trust ratio ||w|| / ||update||."""

    def __init__(
        self,
        params,  # type: ignore[no-untyped-def]
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or eps <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or weight_decay < 0:
            raise ValueError(f"invalid LAMB settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = state["step"].item()
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                m_hat = m / (1 - beta1**step)
                v_hat = v / (1 - beta2**step)
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                # A zero weight (fresh bias) or zero update has no meaningful ratio: fall back to plain Adam.
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.add_(update * trust, alpha=-group["lr"])
        return loss


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, object]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, spec: OptimizerSpec, device: torch.device) -> torch.optim.Optimizer:
    groups = param_groups(model, spec.weight_decay)
    betas = (spec.beta1, spec.beta2)
    if spec.name == "lamb":
        return Lamb(groups, lr=spec.lr, betas=betas, eps=spec.eps)
    return torch.optim.AdamW(groups, lr=spec.lr, betas=betas, eps=spec.eps, fused=device.type == "cuda")


def lr_factor(step: int, spec: OptimizerSpec, max_steps: int) -> float:
    """Multiplier of the peak lr at `step`: linear warm-up, then cosine/linear decay to min_lr_ratio."""
    if step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    if spec.schedule == "constant":
        return 1.0
    span = max(1, max_steps - spec.warmup_steps)
    progress = min(1.0, (step - spec.warmup_steps) / span)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if spec.schedule == "cosine" else 1 - progress
    return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * shape


def build_scheduler(optimizer: torch.optim.Optimizer, spec: OptimizerSpec, max_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, lambda step: lr_factor(step, spec, max_steps))
