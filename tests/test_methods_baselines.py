"""Baseline methods: hand-computed functional pieces, the guards that refuse a silently wrong
number, and a smoke run of every registered method on tiny synthetic data."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from autobackswap.data.groups import group_ids, minority_groups
from autobackswap.data.splits import ExperimentData, load_experiment_data
from autobackswap.data.synthetic import make_synthetic
from autobackswap.methods import jtt as jtt_module
from autobackswap.methods import random_paste as random_paste_module
from autobackswap.methods.base import METHODS, PIPELINE_KEYS, MethodContext, expand_methods, make_method
from autobackswap.methods.dfr import balanced_subset
from autobackswap.methods.erm_aug import AugmentedSource, cutmix, cutmix_box, mixup, soft_cross_entropy
from autobackswap.methods.groupdro import GroupDROLoss
from autobackswap.methods.jtt import error_set
from autobackswap.methods.random_paste import uniform_swap
from autobackswap.options import parse_options
from autobackswap.pipeline import Banks
from autobackswap.train.augment import color_jitter
from autobackswap.train.loop import FitResult, TrainConfig

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TINY = TrainConfig(epochs=1, batch_size=32, width=8)
BASELINES = ["groupdro", "dfr", "jtt", "erm_aug", "random_paste"]
FAST_PIPELINE = {"detector_epochs": 4, "detector_width": 8, "allow_bad_separation": True}  # a smoke test: any masks do


@pytest.fixture(scope="module")
def corr1(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> ExperimentData:
    """Train and val correlation 1.0: no minority group anywhere but in the test split."""
    return load_experiment_data(tiny_synthetic, 32, tmp_path_factory.mktemp("corr1_run"))


@pytest.fixture(scope="module")
def corr075(tmp_path_factory: pytest.TempPathFactory) -> ExperimentData:
    """Correlation 0.75 in train and val: every group present (val: 24 images, 3 per minority group)."""
    base = tmp_path_factory.mktemp("corr075")
    data = make_synthetic(base / "data", n_train=40, n_val=24, n_test=16, correlation=0.75, image_size=32, seed=1)
    return load_experiment_data(data, 32, base / "run")


# ----------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", BASELINES)
def test_baselines_registered_and_state_what_they_need(name: str) -> None:
    method = METHODS.get(name)
    assert method.name == name
    assert method.needs and isinstance(method.needs, str)
    assert method.__doc__ and len(method.__doc__) > 40


def test_needs_name_the_group_information() -> None:
    assert "train group labels" in METHODS.get("groupdro").needs
    assert "val group labels" in METHODS.get("dfr").needs
    assert METHODS.get("erm_aug").needs == "no group labels"
    assert "patch labels" in METHODS.get("random_paste").needs


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_runs_on_tiny_data(name: str, corr075: ExperimentData) -> None:
    """Smoke test over the whole registry: a model (or a stated reason), and sane predictions."""
    method = make_method(name, FAST_PIPELINE)  # stage options reach only the methods that use them
    output = method.run(corr075, TINY, MethodContext(corr075.run_dir))
    if output.skipped is not None:
        assert output.model is None and len(output.skipped) > 20
        return
    assert isinstance(output.model, nn.Module)
    logits = output.model(torch.rand(3, 3, 32, 32))
    assert logits.shape == (3, 2) and torch.isfinite(logits).all()


# ----------------------------------------------------------------------------- options
def test_parse_options_types_and_ignores_pipeline_options() -> None:
    got = parse_options("groupdro", {"eta": "0.5", "label_budget": "50", "inpainter": "gray"}, {"eta": float},
                        ignore=PIPELINE_KEYS)
    assert got == {"eta": 0.5}


def test_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown option 'nope' for groupdro; valid options: eta, on_no_minority"):
        METHODS.get("groupdro")(nope="1")


@pytest.mark.parametrize(("spec", "message"), [
    ("groupdro:eta=abc", "expected float"),
    ("groupdro:on_no_minority=maybe", "on_no_minority"),
    ("erm_aug:aug=mixup+blur", "choose '\\+'-separated from mixup, cutmix, color"),
    ("dfr:cs=a+b", "dfr:cs"),
    ("dfr:cs=0", "positive"),
    ("jtt:up=0.5", "jtt:up"),
    ("random_paste:nope=1", "unknown option 'nope'"),
])
def test_bad_options_raise_before_training(spec: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        make_method(spec)


def test_expand_methods_for_label_budget_sweep() -> None:
    assert expand_methods(["erm", "autobackswap"], [25, 50]) == [
        "erm", "autobackswap:label_budget=25", "autobackswap:label_budget=50"]
    assert expand_methods(["erm"], [25]) == ["erm", "autobackswap:label_budget=25"]
    assert expand_methods(["autobackswap:inpainter=gray", "autobackswap:label_budget=7"], [10]) == [
        "autobackswap:inpainter=gray:label_budget=10", "autobackswap:label_budget=7"]
    assert expand_methods(["erm", "oracle"], []) == ["erm", "oracle"]
    with pytest.raises(ValueError, match="positive"):
        expand_methods(["erm"], [0])


# ----------------------------------------------------------------------------- groups
def test_group_ids_and_minority_groups() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    place = np.array([0, 0, 1, 1, 1, 1, 0])
    ids, groups = group_ids(labels, place)
    assert groups == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert ids.tolist() == [0, 0, 1, 3, 3, 3, 2]
    assert minority_groups(labels, place) == [(0, 1), (1, 0)]
    assert minority_groups(np.array([0, 1]), np.array([0, 1])) == []  # correlation 1.0


# ----------------------------------------------------------------------------- GroupDRO
def test_groupdro_weights_follow_exponentiated_group_losses() -> None:
    loss_fn = GroupDROLoss(n_groups=3, eta=1.0)
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    target = torch.tensor([[0, 0], [1, 0], [1, 1]])  # group 2 absent from the batch
    loss = loss_fn(logits, target)
    l0 = math.log(2.0)  # both samples of group 0: uniform logits
    l1 = math.log(1 + math.exp(2.0))  # label 1 with logits (2, 0)
    z = math.exp(l0) + math.exp(l1) + 1.0
    expected_q = [math.exp(l0) / z, math.exp(l1) / z, 1.0 / z]
    assert loss_fn.q.tolist() == pytest.approx(expected_q)
    w0, w1 = expected_q[0], expected_q[1]
    assert float(loss) == pytest.approx((w0 * l0 + w1 * l1) / (w0 + w1), rel=1e-5)


def test_groupdro_with_no_minority_group_says_it_reduces_to_erm(corr1: ExperimentData) -> None:
    output = METHODS.get("groupdro")().run(corr1, TINY, MethodContext(corr1.run_dir))
    assert output.model is not None and output.skipped is None
    assert any("reduces to ERM" in n and "no minority group in train" in n for n in output.notes)
    assert output.info["n_train_groups"] == 2
    skipped = METHODS.get("groupdro")(on_no_minority="skip").run(corr1, TINY, MethodContext(corr1.run_dir))
    assert skipped.model is None and "reduces to ERM" in (skipped.skipped or "")


def test_groupdro_with_minority_groups_trains_over_four_groups(corr075: ExperimentData) -> None:
    output = METHODS.get("groupdro")(eta="0.5").run(corr075, TINY, MethodContext(corr075.run_dir))
    assert output.model is not None and output.notes == []
    q = output.info["groupdro_q"]
    assert len(q) == 4 and sum(q.values()) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- DFR
def test_balanced_subset_is_capped_to_the_smallest_group() -> None:
    groups = np.array([0] * 10 + [1] * 3 + [2] * 5)
    idx = balanced_subset(groups, 3, np.random.default_rng(0))
    assert np.bincount(groups[idx]).tolist() == [3, 3, 3]
    assert len(set(idx.tolist())) == 9
    with pytest.raises(ValueError, match="empty"):
        balanced_subset(np.array([0, 0, 2]), 3, np.random.default_rng(0))


def test_dfr_skips_without_a_minority_group_in_val(corr1: ExperimentData) -> None:
    output = METHODS.get("dfr")().run(corr1, TINY, MethodContext(corr1.run_dir))
    assert output.model is None
    assert output.skipped is not None
    assert "(y=0, place=1)" in output.skipped and "(y=1, place=0)" in output.skipped
    assert "no minority group" in output.skipped


def test_dfr_retrains_only_the_last_layer_of_the_shared_erm_model(corr075: ExperimentData) -> None:
    cfg = replace_seed(TINY, 3)
    ctx = MethodContext(corr075.run_dir)
    erm = METHODS.get("erm")().run(corr075, cfg, ctx).model  # offered to DFR through the context
    assert erm is not None
    dfr = METHODS.get("dfr")(n_subsets="2").run(corr075, cfg, ctx)
    assert dfr.model is not None
    assert len(ctx.erm_models) == 1  # DFR used the ERM model above instead of training its own
    assert dfr.model is not None and dfr.fit is None
    counts = np.bincount([2 * a + b for a, b in zip(corr075.val.labels, corr075.val.place, strict=True)])
    assert dfr.info["dfr_per_group"] == counts.min() == 3
    assert set(dfr.info["dfr_tuning_wga"]) == {"0.01", "0.1", "1.0", "10.0"}
    erm_state, dfr_state = erm.state_dict(), dfr.model.state_dict()
    for key in erm_state:
        same = torch.equal(erm_state[key], dfr_state[key])
        assert same == (not key.startswith("head.")), key
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(erm.forward_features(x), dfr.model.forward_features(x))


def replace_seed(cfg: TrainConfig, seed: int) -> TrainConfig:
    from dataclasses import replace

    return replace(cfg, seed=seed)


# ----------------------------------------------------------------------------- JTT
class Perfect(nn.Module):
    """Predicts the label it was given for each image index (a stage 1 that fits train perfectly)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # a model has parameters (their device is the model's)
        self.lookup = {images[i].tobytes(): int(labels[i]) for i in range(len(labels))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        imgs = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
        out = torch.zeros(len(imgs), 2)
        for i, img in enumerate(imgs):
            out[i, self.lookup[img.tobytes()]] = 1.0
        return out


def test_jtt_refuses_when_the_error_set_is_empty(corr1: ExperimentData, monkeypatch: pytest.MonkeyPatch) -> None:
    perfect = Perfect(corr1.train.images, corr1.train.labels)
    assert error_set(perfect, corr1.train.images, corr1.train.labels).size == 0
    monkeypatch.setattr(jtt_module.JTT, "stage1", lambda self, data, cfg: perfect)
    output = METHODS.get("jtt")().run(corr1, TINY, MethodContext(corr1.run_dir))
    assert output.model is None
    assert output.skipped is not None and "error set is empty" in output.skipped
    assert "all 40 training images" in output.skipped


def test_jtt_upweights_the_error_set(corr1: ExperimentData, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = np.array([3, 17])
    flipped = corr1.train.labels.copy()
    flipped[wrong] = 1 - flipped[wrong]
    monkeypatch.setattr(jtt_module.JTT, "stage1", lambda self, data, cfg: Perfect(corr1.train.images, flipped))
    seen: dict[str, Any] = {}
    real_fit = jtt_module.fit

    def spy(source: Any, *args: Any, **kwargs: Any) -> FitResult:
        seen["weights"] = source.sample_weights
        return real_fit(source, *args, **kwargs)

    monkeypatch.setattr(jtt_module, "fit", spy)
    output = METHODS.get("jtt")(up="20").run(corr1, TINY, MethodContext(corr1.run_dir))
    assert output.model is not None and output.info["error_set_size"] == 2
    weights = seen["weights"].numpy()
    assert weights[wrong].tolist() == [20.0, 20.0] and (np.delete(weights, wrong) == 1.0).all()
    assert any("error set of 2 / 40" in n for n in output.notes)
    assert any("no minority group in train" in n for n in output.notes)


# ----------------------------------------------------------------------------- ERM + augmentation
def test_mixup_hand_computed() -> None:
    x = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    xm, tm = mixup(x, t, 0.25, torch.tensor([1, 0]))
    assert torch.allclose(xm[0], torch.full((1, 2, 2), 0.75)) and torch.allclose(xm[1], torch.full((1, 2, 2), 0.25))
    assert torch.allclose(tm, torch.tensor([[0.25, 0.75], [0.75, 0.25]]))


def test_cutmix_label_is_the_area_actually_kept() -> None:
    x = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    xc, tc = cutmix(x, t, (0, 2, 0, 4), torch.tensor([1, 0]))  # the top half comes from the other image
    assert xc[0, 0, :2].eq(1).all() and xc[0, 0, 2:].eq(0).all()
    assert torch.allclose(tc, torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    y0, y1, x0, x1 = cutmix_box(32, 32, 0.75, torch.Generator().manual_seed(0))
    assert 0 <= y0 <= y1 <= 32 and 0 <= x0 <= x1 <= 32 and (y1 - y0) <= 16 and (x1 - x0) <= 16


def test_color_jitter_identity_and_determinism() -> None:
    x = torch.rand(4, 3, 8, 8)
    same = color_jitter(x.clone(), 0.0, 0.0, 0.0, 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(same, x, atol=1e-6)
    a = color_jitter(x.clone(), 0.4, 0.4, 0.4, 0.1, torch.Generator().manual_seed(1))
    b = color_jitter(x.clone(), 0.4, 0.4, 0.4, 0.1, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, x) and a.min() >= 0 and a.max() <= 1
    gray = torch.full((1, 3, 4, 4), 0.5)  # hue and saturation leave gray alone
    assert torch.allclose(color_jitter(gray, 0.0, 0.0, 0.9, 0.5, torch.Generator().manual_seed(2)), gray, atol=1e-5)


def test_soft_cross_entropy_matches_hard_labels() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.3, 0.1]])
    y = torch.tensor([0, 1])
    hard = torch.nn.functional.cross_entropy(logits, y)
    assert soft_cross_entropy(logits, torch.nn.functional.one_hot(y, 2).float()) == pytest.approx(float(hard))


@pytest.mark.parametrize("augs", [("mixup",), ("cutmix",), ("color",), ("mixup", "cutmix", "color")])
def test_augmented_source_yields_soft_targets(augs: tuple[str, ...]) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    source = AugmentedSource(images, np.array([0, 1] * 5), 2, augs)
    batches = list(source.batches(0, 4, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [4, 4] + [2]
    for x, target in batches:
        assert x.shape[1:] == (3, 8, 8) and target.shape[1] == 2
        assert torch.allclose(target.sum(1), torch.ones(len(target)))


# ----------------------------------------------------------------------------- random paste
def test_uniform_swap_draws_any_image_as_background() -> None:
    fg = np.zeros((6, 8, 8, 4), np.uint8)
    fg[:, 2:5, 2:5, 3] = 255
    images = np.arange(6, dtype=np.uint8)[:, None, None, None].repeat(8, 1).repeat(8, 2).repeat(3, 3)
    swap = uniform_swap(fg, images, np.array([0, 0, 0, 0, 0, 1]), None)
    assert len(swap.donors) == 1 and swap.donors[0].tolist() == list(range(6))
    params = swap.sample(torch.arange(6).repeat(200), torch.Generator().manual_seed(0))
    counts = np.bincount(params.bg_index.numpy(), minlength=6)
    assert counts.min() > 120  # uniform over images (class-balanced would give image 5 half the draws)
    assert torch.equal(swap.bg, torch.from_numpy(images))


def test_random_paste_pastes_on_original_images(corr1: ExperimentData, monkeypatch: pytest.MonkeyPatch) -> None:
    from autobackswap.compose.swap import BackgroundSwap, SwapConfig

    n = len(corr1.train)
    fg = np.zeros((n, 32, 32, 4), np.uint8)
    fg[:, 8:24, 8:24] = 200
    inpainted = np.full((n, 32, 32, 3), 7, np.uint8)
    banks = Banks(BackgroundSwap(fg, inpainted, corr1.train.labels, SwapConfig()), {"mask_iou": 0.5})
    ctx = MethodContext(corr1.run_dir, build_banks=lambda *a: banks)  # the injection point, no patched globals
    seen: dict[str, Any] = {}
    real_fit = random_paste_module.fit

    def spy(source: Any, *args: Any, **kwargs: Any) -> FitResult:
        seen["source"] = source
        return real_fit(source, *args, **kwargs)

    monkeypatch.setattr(random_paste_module, "fit", spy)
    output = METHODS.get("random_paste")().run(corr1, TINY, ctx)
    swap = seen["source"].swap
    assert torch.equal(swap.bg, torch.from_numpy(corr1.train.images))  # not the inpainted bank
    assert torch.equal(swap.fg, torch.from_numpy(fg))  # the same cut-outs as autobackswap
    assert [d.tolist() for d in swap.donors] == [list(range(n))]
    assert output.info["mask_iou"] == 0.5 and Path(output.info["contact_sheet"]).is_file()
