"""Composition: class-balanced background swaps, sampled then applied, with correct per-item RNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autobackswap.compose import (
    BackgroundSwap,
    BackSwapDataset,
    JitterConfig,
    SwapConfig,
    SwapParams,
    apply_params,
    sample_params,
)
from autobackswap.compose.swap import item_generator
from autobackswap.train.sources import SwapSource

pytestmark = pytest.mark.usefixtures("torch_single_thread")

NO_JITTER = JitterConfig(scale=(1.0, 1.0), rotation=0.0, shift=0.0)


def identity_params(n: int, swap: list[bool], bg_index: list[int] | None = None) -> SwapParams:
    return SwapParams(torch.tensor(swap), torch.tensor(bg_index or list(range(n))), torch.ones(n), torch.zeros(n),
                      torch.zeros(n, 2))


def rgba_bank(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(foregrounds (N, S, S, 4), backgrounds (N, S, S, 3)): a soft-edged square per image, distinct colours."""
    rng = np.random.default_rng(seed)
    fg = np.zeros((n, size, size, 4), np.uint8)
    fg[..., :3] = rng.integers(0, 256, (n, 1, 1, 3))
    fg[:, 4:12, 5:11, 3] = 255
    fg[:, 3, 5:11, 3] = 128
    bg = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    return fg, bg


def compose_by_hand(fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    a = fg[..., 3:4].astype(np.float64) / 255
    return a * fg[..., :3] / 255 + (1 - a) * bg / 255


# ----------------------------------------------------------------------------- sampling
def test_backgrounds_are_class_balanced_with_imbalanced_donors() -> None:
    donors = [torch.arange(0, 90), torch.arange(90, 100)]  # 90 class-0 donors, 10 class-1 donors
    params = sample_params(20000, donors, JitterConfig(), 1.0, torch.Generator().manual_seed(0))
    from_class1 = (params.bg_index >= 90).float().mean().item()
    assert abs(from_class1 - 0.5) < 0.02  # drawn per class, not per image (that would give 0.1)
    counts = torch.bincount(params.bg_index[params.bg_index >= 90] - 90, minlength=10)
    assert counts.min() > 0.8 * counts.float().mean()  # uniform within the class
    assert params.bg_index.min() >= 0 and params.bg_index.max() < 100


def test_classes_without_donors_are_skipped() -> None:
    donors = [torch.arange(0, 5), torch.empty(0, dtype=torch.long), torch.arange(5, 10)]
    params = sample_params(4000, donors, JitterConfig(), 1.0, torch.Generator().manual_seed(0))
    assert abs((params.bg_index >= 5).float().mean().item() - 0.5) < 0.04


def test_no_donors_at_all_means_no_swaps() -> None:
    params = sample_params(3, [torch.empty(0, dtype=torch.long)] * 2, JitterConfig(), 1.0, torch.Generator())
    assert not params.swap.any() and params.bg_index.shape == (3,)


def test_a_bank_without_any_usable_image_leaves_every_image_alone(caplog: pytest.LogCaptureFixture) -> None:
    """E.g. a weak detector that finds no foreground anywhere: counted as no-fg, not a crash."""
    fg, bg = rgba_bank(6)
    fg[:3, ..., 3] = 0
    fg[3:, ..., 3] = 255
    with caplog.at_level("WARNING"):
        swap = BackgroundSwap(fg, bg, np.array([0, 1] * 3), SwapConfig(p=1.0, jitter=JitterConfig()))
    assert "nothing will be swapped" in caplog.text
    x = torch.rand(6, 3, 16, 16)
    assert torch.equal(swap(x, torch.arange(6), torch.Generator().manual_seed(0)), x)
    source = SwapSource(np.zeros((6, 16, 16, 3), np.uint8), np.array([0, 1] * 3), swap, hflip=False)
    assert sum(len(y) for _, y in source.batches(0, 4, torch.Generator())) == 6


def test_jitter_ranges_p_and_swappable() -> None:
    jitter = JitterConfig(scale=(0.5, 1.5), rotation=30.0, shift=0.1)
    params = sample_params(5000, [torch.arange(4)], jitter, 0.3, torch.Generator().manual_seed(1),
                           swappable=torch.arange(5000) % 2 == 0)
    assert params.scale.min() >= 0.5 and params.scale.max() <= 1.5
    assert params.angle.abs().max() <= 30.0 and params.angle.abs().max() > 25.0
    assert params.shift.shape == (5000, 2) and params.shift.abs().max() <= 0.1
    assert not params.swap[1::2].any()  # unswappable entries are never swapped
    assert abs(params.swap[0::2].float().mean().item() - 0.3) < 0.03
    item = params[0]
    assert set(item) == {"swap", "bg_index", "scale", "angle", "shift"} and len(item["shift"]) == 2


# ----------------------------------------------------------------------------- applying
def test_identity_params_reproduce_alpha_compositing() -> None:
    fg, bg = rgba_bank(2, 8)
    rng = np.random.default_rng(1)
    fg[..., 3] = rng.choice([0, 64, 128, 200, 255], (2, 8, 8))  # a hand-made soft alpha
    images = torch.rand(2, 3, 8, 8)
    f = torch.from_numpy(fg).permute(0, 3, 1, 2).float() / 255
    b = torch.from_numpy(bg).permute(0, 3, 1, 2).float() / 255
    out = apply_params(images, f, b, identity_params(2, [True, False]))
    expected = torch.from_numpy(compose_by_hand(fg[0], bg[0])).permute(2, 0, 1).float()
    assert torch.allclose(out[0], expected, atol=1e-5)
    assert torch.equal(out[1], images[1])  # not swapped: the original image


def one_pixel_fg(y: int, x: int, size: int = 8) -> torch.Tensor:
    fg = torch.zeros(1, 4, size, size)
    fg[0, :, y, x] = 1.0
    return fg


def test_shift_is_a_fraction_of_the_side() -> None:
    fg = one_pixel_fg(3, 2)
    params = identity_params(1, [True])
    params.shift[0] = torch.tensor([0.25, 0.125])  # dx = +2 px, dy = +1 px at 8 px
    out = apply_params(torch.zeros(1, 3, 8, 8), fg, torch.zeros(1, 3, 8, 8), params)
    assert torch.nonzero(out[0, 0] > 0.99).tolist() == [[4, 4]]
    assert out[0, 0].sum().item() == pytest.approx(1.0, abs=1e-5)


def test_rotation_by_90_degrees_turns_a_bar_upright() -> None:
    fg = torch.zeros(1, 4, 8, 8)
    fg[0, :, 3:5, 1:7] = 1.0  # a 2 x 6 bar centred on the image centre
    params = identity_params(1, [True])
    params.angle[0] = 90.0
    out = apply_params(torch.zeros(1, 3, 8, 8), fg, torch.zeros(1, 3, 8, 8), params)
    expected = torch.zeros(8, 8)
    expected[1:7, 3:5] = 1.0
    assert torch.allclose(out[0, 0], expected, atol=1e-4)


def test_scale_grows_the_foreground_about_its_centroid() -> None:
    fg = torch.zeros(1, 4, 16, 16)
    fg[0, :, 6:10, 6:10] = 1.0  # 16 px of alpha, centred
    params = identity_params(1, [True])
    params.scale[0] = 2.0
    out = apply_params(torch.zeros(1, 3, 16, 16), fg, torch.zeros(1, 3, 16, 16), params)
    alpha = out[0, 0]
    assert alpha.sum().item() == pytest.approx(64.0, rel=0.1)
    assert torch.all(alpha[5:11, 5:11] > 0.99)
    assert torch.equal(alpha, alpha.flip(0)) and torch.equal(alpha, alpha.flip(1))  # still centred


# ----------------------------------------------------------------------------- the batch transform
def make_swap(n: int = 12, labels: list[int] | None = None, jitter: JitterConfig = NO_JITTER,
              p: float = 1.0) -> tuple[BackgroundSwap, np.ndarray]:
    fg, bg = rgba_bank(n)
    labels_arr = np.array(labels if labels is not None else [i % 2 for i in range(n)])
    images = np.clip(compose_by_hand(fg, bg) * 255, 0, 255).round().astype(np.uint8)
    return BackgroundSwap(fg, bg, labels_arr, SwapConfig(p=p, jitter=jitter)), images


def to_nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def test_batch_transform_pastes_own_foreground_on_the_drawn_background() -> None:
    swap, images = make_swap()
    idx = torch.tensor([3, 0, 7, 7, 10])
    x = to_nchw(images[idx.numpy()])
    params = swap.sample(idx, torch.Generator().manual_seed(0))
    assert params.swap.all()
    out = swap.apply(x, idx, params)
    fg, bg = swap.fg.numpy(), swap.bg.numpy()
    for k, i in enumerate(idx.tolist()):
        expected = compose_by_hand(fg[i], bg[int(params.bg_index[k])])
        assert np.allclose(out[k].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_same_generator_seed_gives_identical_composites() -> None:
    swap, images = make_swap(jitter=JitterConfig())
    idx = torch.arange(12)
    x = to_nchw(images)
    a = swap(x, idx, torch.Generator().manual_seed(42))
    b = swap(x, idx, torch.Generator().manual_seed(42))
    c = swap(x, idx, torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, to_nchw(images))  # the input batch is not modified


def test_p_zero_leaves_images_unchanged() -> None:
    swap, images = make_swap(jitter=JitterConfig(), p=0.0)
    x = to_nchw(images)
    assert torch.equal(swap(x, torch.arange(12), torch.Generator().manual_seed(0)), x)


def test_class_balanced_backgrounds_through_the_transform() -> None:
    labels = [0] * 18 + [1] * 2  # 9 : 1
    swap, _ = make_swap(20, labels)
    idx = torch.randint(0, 20, (5000,), generator=torch.Generator().manual_seed(0))
    params = swap.sample(idx, torch.Generator().manual_seed(1))
    bg_labels = swap.labels[params.bg_index].float()
    assert abs(bg_labels.mean().item() - 0.5) < 0.03


def test_unusable_images_are_never_swapped_nor_donors() -> None:
    fg, bg = rgba_bank(10)
    fg[2, ..., 3] = 0  # no foreground
    fg[5, ..., 3] = 255  # all foreground
    fg[7, ..., 3] = 0
    labels = np.array([0, 1] * 5)
    swap = BackgroundSwap(fg, bg, labels, SwapConfig(p=1.0, jitter=JitterConfig()))
    assert swap.usable.tolist() == [i not in (2, 5, 7) for i in range(10)]
    idx = torch.arange(10).repeat(300)
    params = swap.sample(idx, torch.Generator().manual_seed(0))
    assert not params.swap[torch.isin(idx, torch.tensor([2, 5, 7]))].any()
    assert params.swap[~torch.isin(idx, torch.tensor([2, 5, 7]))].all()
    assert not torch.isin(params.bg_index, torch.tensor([2, 5, 7])).any()
    images = np.clip(compose_by_hand(fg, bg) * 255, 0, 255).round().astype(np.uint8)
    x = to_nchw(images)
    out = swap(x, torch.arange(10), torch.Generator().manual_seed(0))
    for i in (2, 5, 7):
        assert torch.equal(out[i], x[i])


def test_mismatched_banks_raise() -> None:
    fg, bg = rgba_bank(4)
    with pytest.raises(ValueError, match="same length"):
        BackgroundSwap(fg, bg[:3], np.array([0, 1, 0, 1]))


def test_drop_in_transform_in_a_user_training_loop() -> None:
    swap, images = make_swap(jitter=JitterConfig())
    data = torch.utils.data.TensorDataset(to_nchw(images), torch.arange(12), swap.labels)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    seen = 0
    for x, idx, y in loader:
        xs = swap(x, idx, g)
        assert xs.shape == x.shape and not torch.equal(xs, x)
        assert ((xs >= 0) & (xs <= 1)).all()
        loss = torch.nn.functional.cross_entropy(model(xs), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(idx)
    assert seen == 12


def test_swap_source_yields_every_image_once_per_epoch() -> None:
    swap, images = make_swap(jitter=JitterConfig())
    source = SwapSource(images, swap.labels.numpy(), swap, hflip=False)
    batches = list(source.batches(0, 5, torch.Generator().manual_seed(0)))
    # 12 images in batches of 5: 5 + 5 + 2
    assert [len(y) for _, y in batches] == [5, 5, 2]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(swap.labels.tolist())
    assert source.last_params is not None and source.last_params.swap.all()


# ----------------------------------------------------------------------------- the Dataset wrapper
def test_dataset_items_are_reproducible_and_change_with_the_epoch() -> None:
    swap, images = make_swap(jitter=JitterConfig())
    ds = BackSwapDataset(images, swap, seed=0)
    assert len(ds) == 12
    x0, y0 = ds[3]
    assert x0.shape == (3, 16, 16) and y0 == int(swap.labels[3])
    assert torch.equal(ds[3][0], x0)
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], x0)
    ds.set_epoch(0)
    assert torch.equal(ds[3][0], x0)
    assert not torch.equal(BackSwapDataset(images, swap, seed=1)[3][0], x0)


def test_item_generator_streams_differ_across_items_epochs_and_seeds() -> None:
    draws = {(s, e, i): torch.rand(4, generator=item_generator(s, e, i)) for s in (0, 1) for e in (0, 1)
             for i in range(50)}
    values = [tuple(v.tolist()) for v in draws.values()]
    assert len(set(values)) == len(values)
    assert torch.equal(torch.rand(4, generator=item_generator(0, 0, 7)), draws[(0, 0, 7)])


def identical_items_dataset(n: int = 16) -> BackSwapDataset:
    """Every item has the same image and foreground; only the drawn background and jitter can tell two
    composites apart. So two items with the same random stream give identical tensors."""
    fg, bg = rgba_bank(n)
    fg[:] = fg[0]
    images = np.clip(compose_by_hand(fg, bg[:1].repeat(n, 0)) * 255, 0, 255).round().astype(np.uint8)
    labels = np.array([0, 1] * (n // 2))
    swap = BackgroundSwap(fg, bg, labels, SwapConfig(p=1.0, jitter=JitterConfig()))
    # labels alternate but the images are identical: the label only changes which donors exist
    return BackSwapDataset(images, swap, seed=0)


def collect(ds: BackSwapDataset, workers: int) -> torch.Tensor:
    loader = torch.utils.data.DataLoader(ds, batch_size=1, shuffle=False, num_workers=workers)
    return torch.cat([x for x, _ in loader])


def test_dataloader_workers_do_not_repeat_streams_and_match_single_process() -> None:
    ds = identical_items_dataset()
    multi = collect(ds, 2)
    # the reference's bug: worker k's j-th item repeats worker 0's j-th item's random draws
    flat = multi.flatten(1)
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            assert not torch.equal(flat[i], flat[j]), (i, j)
    assert torch.equal(collect(ds, 0), multi)  # independent of num_workers
    ds.set_epoch(1)
    assert not torch.equal(collect(ds, 2), multi)


# ----------------------------------------------------------------------------- photo options
def test_bg_shuffle_permutes_background_channels_and_leaves_the_other_draws_alone() -> None:
    donors = [torch.arange(0, 6), torch.arange(6, 12)]
    plain = sample_params(500, donors, JitterConfig(), 1.0, torch.Generator().manual_seed(3))
    shuffled = sample_params(500, donors, JitterConfig(), 1.0, torch.Generator().manual_seed(3),
                             shuffle_bg_channels=True)
    assert plain.bg_channels is None and shuffled.bg_channels is not None
    for name in ("swap", "bg_index", "scale", "angle", "shift"):
        assert torch.equal(getattr(plain, name), getattr(shuffled, name))
    assert torch.equal(shuffled.bg_channels.sort(1).values, torch.arange(3).expand(500, 3))  # permutations
    assert len({tuple(r) for r in shuffled.bg_channels.tolist()}) == 6  # all six orders occur
    assert shuffled[0]["bg_channels"] == shuffled.bg_channels[0].tolist()


def test_bg_shuffle_composites_on_the_permuted_background() -> None:
    fg, bg = rgba_bank(4)
    swap = BackgroundSwap(fg, bg, np.array([0, 1, 0, 1]), SwapConfig(jitter=NO_JITTER, bg_shuffle=True))
    idx = torch.arange(4)
    params = swap.sample(idx, torch.Generator().manual_seed(0))
    out = swap.apply(torch.zeros(4, 3, 16, 16), idx, params)
    for k in range(4):
        drawn = bg[int(params.bg_index[k])][..., params.bg_channels[k].numpy()]
        assert np.allclose(out[k].permute(1, 2, 0).numpy(), compose_by_hand(fg[k], drawn), atol=1e-5)


def test_bg_only_appends_backgrounds_with_uniform_targets() -> None:
    fg, bg = rgba_bank(12)
    labels = np.array([i % 2 for i in range(12)])
    images = np.clip(compose_by_hand(fg, bg) * 255, 0, 255).round().astype(np.uint8)
    swap = BackgroundSwap(fg, bg, labels, SwapConfig(jitter=NO_JITTER, bg_only=0.5))
    source = SwapSource(images, labels, swap, hflip=False)
    x, y = next(source.batches(0, 8, torch.Generator().manual_seed(0)))
    assert x.shape == (12, 3, 16, 16) and y.shape == (12, 2) and y.dtype == torch.float32
    assert torch.equal(y[:8].sum(1), torch.ones(8)) and set(y[:8].flatten().tolist()) == {0.0, 1.0}
    assert torch.equal(y[8:], torch.full((4, 2), 0.5))
    bank = torch.from_numpy(bg).permute(0, 3, 1, 2).float() / 255
    for img in x[8:]:  # each appended image is one of the inpainted backgrounds as it is
        assert any(torch.allclose(img, b, atol=1e-6) for b in bank)
    again = next(source.batches(0, 8, torch.Generator().manual_seed(0)))
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    # soft targets train through the default loss
    logits = torch.zeros(12, 2, requires_grad=True)
    torch.nn.functional.cross_entropy(logits, y).backward()
    assert logits.grad is not None and torch.allclose(logits.grad[8:], torch.zeros(4, 2))


def test_bg_only_out_of_range_is_a_clear_error() -> None:
    from autobackswap.pipeline import PipelineConfig

    with pytest.raises(ValueError, match="bg_only"):
        PipelineConfig.from_options({"bg_only": "-1"})
    cfg = PipelineConfig.from_options({"bg_only": "0.25", "bg_shuffle": "true"}).swap
    assert cfg.bg_only == 0.25 and cfg.bg_shuffle


# ----------------------------------------------------------------------------- distractors
def test_distractors_are_class_balanced_optional_and_leave_the_other_draws_alone() -> None:
    donors = [torch.arange(0, 90), torch.arange(90, 100)]
    plain = sample_params(20000, donors, JitterConfig(), 1.0, torch.Generator().manual_seed(3),
                          shuffle_bg_channels=True)
    extra = sample_params(20000, donors, JitterConfig(), 1.0, torch.Generator().manual_seed(3),
                          shuffle_bg_channels=True, distractor=0.6)
    assert plain.distractor is None and extra.distractor is not None
    for name in ("swap", "bg_index", "scale", "angle", "shift", "bg_channels"):
        assert torch.equal(getattr(plain, name), getattr(extra, name))
    d = extra.distractor
    assert abs(d.present.float().mean().item() - 0.6) < 0.02
    assert abs((d.index[d.present] >= 90).float().mean().item() - 0.5) < 0.02  # class-balanced, like backgrounds
    assert not torch.equal(d.index[d.present], extra.bg_index[d.present])  # drawn on their own
    assert d.scale.min() >= 0.8 and d.scale.max() <= 1.2 and d.angle.abs().max() <= 30.0
    first = int(torch.nonzero(d.present)[0])
    assert extra[first]["distractor"]["index"] == int(d.index[first])
    assert "distractor" not in extra[int(torch.nonzero(~d.present)[0])]
    assert sample_params(10, donors, JitterConfig(), 1.0, torch.Generator(), distractor=1.0).distractor.present.all()


def test_distractor_is_pasted_behind_the_object_on_the_drawn_background() -> None:
    size = 16
    fg = np.zeros((4, size, size, 4), np.uint8)
    fg[..., :3] = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)[:, None, None]
    fg[:, 4:10, 2:8, 3] = 255  # objects on the left ...
    fg[1, :, :, 3] = 0
    fg[1, 6:12, 5:11, 3] = 255  # ... but image 1's, which overlaps them from the lower right
    bg = np.random.default_rng(0).integers(0, 256, (4, size, size, 3)).astype(np.uint8)
    labels = np.array([0, 1, 0, 1])
    swap = BackgroundSwap(fg, bg, labels, SwapConfig(jitter=NO_JITTER, distractor=1.0))
    idx = torch.arange(4)
    params = swap.sample(idx, torch.Generator().manual_seed(0))
    out = swap.apply(torch.zeros(4, 3, size, size), idx, params)
    assert params.distractor is not None
    for k in range(4):
        d, b = int(params.distractor.index[k]), int(params.bg_index[k])
        behind = np.clip(compose_by_hand(fg[d], bg[b]) * 255, 0, 255)
        expected = compose_by_hand(fg[k], behind)
        assert np.allclose(out[k].permute(1, 2, 0).numpy(), expected, atol=1e-5), k
    # the object stays whole on top: its pixels are its own colour wherever its alpha is full
    assert torch.allclose(out[0, :, 4:10, 2:8], torch.tensor([1.0, 0, 0])[:, None, None].expand(3, 6, 6), atol=1e-5)
    with pytest.raises(ValueError, match="distractors="):
        apply_params(torch.zeros(4, 3, size, size), torch.zeros(4, 4, size, size), torch.zeros(4, 3, size, size), params)


def test_distractor_option_reaches_the_swap_and_is_checked() -> None:
    from autobackswap.pipeline import PipelineConfig

    assert PipelineConfig.from_options({"distractor": "0.5"}).swap.distractor == 0.5
    assert PipelineConfig().swap.distractor == 0.0  # the reference method by default
    with pytest.raises(ValueError, match="distractor"):
        PipelineConfig.from_options({"distractor": "1.5"})
