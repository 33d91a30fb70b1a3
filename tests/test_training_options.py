"""The paper's training settings as options: SGD, a constant schedule, label smoothing, class-weighted
cross entropy, gradient clipping and the reference's resized crop, each with a hand-checkable effect;
and the defaults untouched."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autobackswap.train.augment import AUGMENTS, build_augment, scale_ratio_crop
from autobackswap.train.loop import (
    LR_SCHEDULES,
    OPTIMIZERS,
    StepRunner,
    TrainConfig,
    class_weights,
    cosine_lr,
    fit,
    make_loss,
)
from autobackswap.train.sources import ArraySource

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_class_weights_are_the_largest_count_over_each_count() -> None:
    assert class_weights(np.array([0, 0, 0, 1]), 2).tolist() == [1.0, 3.0]  # the reference: [1, n_neg / n_pos]
    assert class_weights(torch.tensor([0, 1, 1, 2, 2, 2]), 3).tolist() == [3.0, 1.5, 1.0]
    assert class_weights(np.array([1, 1]), 3).tolist() == [0.0, 1.0, 0.0]  # an absent class weighs nothing


def test_the_default_loss_is_plain_cross_entropy() -> None:
    assert make_loss(TrainConfig(), np.array([0, 1]), 2) is None  # fit keeps F.cross_entropy, as before


def test_class_weighted_loss_is_the_mean_of_weighted_per_sample_losses() -> None:
    """Uniform logits: every sample's cross entropy is ln 2; labels [0, 0, 0, 1] weigh [1, 1, 1, 3], and the
    mean over the batch (the reference's reduction) is (1 + 1 + 1 + 3) / 4 * ln 2."""
    loss = make_loss(TrainConfig(class_weighted=True), np.array([0, 0, 0, 1]), 2)
    assert loss is not None
    value = loss(torch.zeros(4, 2), torch.tensor([0, 0, 0, 1]))
    assert float(value) == pytest.approx(1.5 * math.log(2), rel=1e-6)


def test_label_smoothing_mixes_in_the_uniform_target() -> None:
    """p = softmax([ln 3, 0]) = [3/4, 1/4], y = 0, eps = 0.1, K = 2:
    (1 - eps) (-ln 3/4) + eps / 2 (-ln 3/4 - ln 1/4)."""
    loss = make_loss(TrainConfig(label_smoothing=0.1), None, 2)
    assert loss is not None
    expected = 0.9 * -math.log(0.75) + 0.05 * (-math.log(0.75) - math.log(0.25))
    assert float(loss(torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([0]))) == pytest.approx(expected, rel=1e-6)


def test_class_weights_need_the_training_labels() -> None:
    with pytest.raises(ValueError, match="does not expose its training labels"):
        make_loss(TrainConfig(class_weighted=True), None, 2)


def test_sgd_uses_momentum_and_weight_decay() -> None:
    """lr 0.1, momentum 0.9, gradient 1 twice: 1 -> 0.9 -> 0.9 - 0.1 (0.9 + 1) = 0.71."""
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = OPTIMIZERS.get("sgd")([p], TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0))
    assert isinstance(opt, torch.optim.SGD)
    for expected in (0.9, 0.71):
        opt.zero_grad()
        p.sum().backward()
        opt.step()
        assert float(p.detach()) == pytest.approx(expected, abs=1e-6)
    q = torch.nn.Parameter(torch.tensor([2.0]))
    decayed = OPTIMIZERS.get("sgd")([q], TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.5))
    q.grad = torch.zeros(1)
    decayed.step()
    assert float(q.detach()) == pytest.approx(2.0 - 0.1 * 0.5 * 2.0)  # coupled L2: gradient + wd * w
    assert isinstance(OPTIMIZERS.get("adamw")([q], TrainConfig()), torch.optim.AdamW)


def test_unknown_optimizer_and_schedule_list_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="unknown optimizer 'adam'; valid names: adamw, sgd"):
        TrainConfig(optimizer="adam")
    with pytest.raises(KeyError, match="valid names: constant, cosine"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\), got 1.0"):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"grad_clip must be a number in \[0, inf\), got -1"):
        TrainConfig(grad_clip=-1)


def test_schedules() -> None:
    constant = LR_SCHEDULES.get("constant")
    assert [constant(s, 100, 10, 1e-3) for s in (0, 5, 99)] == [1e-3] * 3  # no warmup, no decay
    assert LR_SCHEDULES.get("cosine") is cosine_lr
    assert cosine_lr(0, 100, 10, 1.0) == pytest.approx(0.1)  # warmup: (step + 1) / warmup
    assert cosine_lr(55, 100, 10, 1.0) == pytest.approx(0.5)  # half-way through the decay
    assert cosine_lr(100, 100, 10, 1.0) == pytest.approx(0.0)


def test_gradient_clipping_scales_the_gradient_to_the_norm() -> None:
    """Loss 3 a + 4 b has gradient (3, 4), norm 5; clipped to 1 it is (0.6, 0.8), and SGD with lr 1 moves
    (0, 0) to (-0.6, -0.8)."""
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    runner = StepRunner(grad_clip=1.0)
    runner.step(model, opt, (model.weight * torch.tensor([[3.0, 4.0]])).sum())
    assert model.weight.detach().flatten().tolist() == pytest.approx([-0.6, -0.8])
    plain = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(plain.weight)
    opt = torch.optim.SGD(plain.parameters(), lr=1.0)
    StepRunner().step(plain, opt, (plain.weight * torch.tensor([[3.0, 4.0]])).sum())
    assert plain.weight.detach().flatten().tolist() == pytest.approx([-3.0, -4.0])


def test_resized_crop_is_registered_and_is_the_identity_at_full_scale() -> None:
    assert "resized_crop" in AUGMENTS and build_augment("resized_crop") is not None
    x = torch.rand(3, 3, 16, 16)
    same = scale_ratio_crop(x, (1.0, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(same, x, atol=1e-6)
    a = AUGMENTS.get("resized_crop")(x.clone(), torch.Generator().manual_seed(1))
    b = AUGMENTS.get("resized_crop")(x.clone(), torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)


def test_resized_crop_keeps_a_crop_that_fits() -> None:
    """A horizontal ramp: a crop of width w about centre c maps the output's x in [-1, 1] to c + w x, so
    the resized ramp keeps a slope of at most 1 (w <= 1) and at least sqrt(0.7 * 3/4) (the smallest width)."""
    ramp = torch.linspace(0, 1, 64).expand(8, 3, 64, 64).contiguous()
    out = scale_ratio_crop(ramp, (0.7, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(2))
    slopes = (out[:, 0, 32, 48] - out[:, 0, 32, 16]) / (ramp[0, 0, 32, 48] - ramp[0, 0, 32, 16])
    assert bool((slopes <= 1.0 + 1e-4).all()) and bool((slopes >= math.sqrt(0.7 * 0.75) - 1e-3).all())


def test_fit_with_the_paper_options_trains(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (24, 16, 16, 3), dtype=np.uint8)
    labels = np.array([0] * 18 + [1] * 6)
    images[labels == 1, :, :8] = 255  # learnable
    cfg = TrainConfig(epochs=2, batch_size=8, optimizer="sgd", lr=1e-2, lr_schedule="constant", label_smoothing=0.1,
                      class_weighted=True, grad_clip=1.0, augment="resized_crop", width=8, device="cpu")
    result = fit(ArraySource(images, labels), images, labels, 2, cfg)
    assert len(result.history) == 2 and all(np.isfinite(h["train_loss"]) for h in result.history)
    assert result.device == "cpu" and result.precision == "fp32"
    with caplog.at_level(logging.WARNING):
        fit(ArraySource(images, labels), images, labels, 2, cfg, loss_fn=lambda z, y: F.cross_entropy(z, y))
    assert "class_weighted and label_smoothing do not apply" in caplog.text
