"""LAMB against an independent NumPy transcription of You et al. (2019), Algorithm 2; the lr schedule; param groups."""

import numpy as np
import pytest
import torch

from pretrain_trainer.config import OptimizerSpec
from pretrain_trainer.optim import Lamb, build_optimizer, build_scheduler, lr_factor, param_groups


def reference_lamb(w, grads, lr, beta1, beta2, eps, wd):
    """Algorithm 2 of the LAMB paper with the trust ratio phi(x) = x, for one tensor."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, 1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        r = (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
        update = r + wd * w
        ratio = np.linalg.norm(w) / np.linalg.norm(update)
        w = w - lr * ratio * update
    return w


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_lamb_matches_the_papers_algorithm(wd):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(8, 5))
    grads = [rng.normal(size=(8, 5)) for _ in range(6)]
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = Lamb([p], lr=0.05, betas=(0.9, 0.999), eps=1e-6, weight_decay=wd)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p.detach().numpy(), reference_lamb(w0, grads, 0.05, 0.9, 0.999, 1e-6, wd), rtol=1e-10)


def test_lamb_falls_back_to_adam_for_zero_weights():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = Lamb([p], lr=0.1)
    p.grad = torch.ones(4)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((4,), -0.1), atol=1e-5)


def test_lamb_trains_a_tiny_regression():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    opt = Lamb(model.parameters(), lr=0.05)
    first = None
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.8


def test_invalid_lamb_settings_are_refused():
    with pytest.raises(ValueError, match="invalid LAMB settings"):
        Lamb([torch.nn.Parameter(torch.zeros(1))], lr=-1)


def test_schedule_warms_up_linearly_then_decays_to_the_floor():
    spec = OptimizerSpec(lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, spec, 110) == pytest.approx(0.1)
    assert lr_factor(9, spec, 110) == pytest.approx(1.0)
    assert lr_factor(10, spec, 110) == pytest.approx(1.0)
    assert lr_factor(60, spec, 110) == pytest.approx(0.55)
    assert lr_factor(110, spec, 110) == pytest.approx(0.1)
    assert lr_factor(500, spec, 110) == pytest.approx(0.1)
    linear = OptimizerSpec(lr=1.0, warmup_steps=0, schedule="linear", min_lr_ratio=0.0)
    assert lr_factor(25, linear, 100) == pytest.approx(0.75)
    assert lr_factor(50, OptimizerSpec(schedule="constant", warmup_steps=0), 100) == 1.0


def test_scheduler_drives_the_optimizer_lr():
    model = torch.nn.Linear(2, 2)
    spec = OptimizerSpec(lr=0.5, warmup_steps=4, schedule="linear", min_lr_ratio=0.0)
    opt = build_optimizer(model, spec, torch.device("cpu"))
    sched = build_scheduler(opt, spec, max_steps=8)
    seen = []
    for _ in range(8):
        seen.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5, 0.375, 0.25, 0.125])


def test_weight_decay_applies_to_matrices_only():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    decay, no_decay = param_groups(model, 0.1)
    assert [p.ndim for p in decay["params"]] == [2]
    assert sorted(p.ndim for p in no_decay["params"]) == [1, 1, 1]
    assert no_decay["weight_decay"] == 0.0


def test_lamb_is_chosen_by_name():
    opt = build_optimizer(torch.nn.Linear(2, 2), OptimizerSpec(name="lamb"), torch.device("cpu"))
    assert isinstance(opt, Lamb)
