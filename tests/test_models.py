"""One smoke test per registered classifier model, plus checkpoint and seeding behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autobackswap.errors import DataError, NotFittedError
from autobackswap.train.loop import TrainConfig, fit, load_classifier, predict_logits, save_classifier
from autobackswap.train.models import MODELS, create_model
from autobackswap.train.sources import ArraySource

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_forward(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    x = torch.rand(2, 3, 64, 64)  # NCHW float in [0, 1]
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
    assert logits.shape == (2, 3)
    assert features.ndim == 2 and features.shape[0] == 2
    assert features.shape[1] == model.num_features == model.head.in_features
    assert model.head.out_features == 3
    assert torch.isfinite(logits).all()
    with torch.no_grad():  # the head maps features to logits (dropout is off in eval mode)
        assert torch.allclose(model.head(features), logits, atol=1e-5)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_trains_one_step(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=2).to(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(KeyError) as exc:
        create_model("resnet9000", num_classes=2)
    message = exc.value.args[0]
    assert "unknown classifier model 'resnet9000'" in message
    for name in MODELS.names():
        assert name in message


def test_width_and_weights(tmp_path) -> None:
    small = create_model("small_resnet", 2, width=8)
    assert small.num_features == 32
    path = tmp_path / "w.pt"
    torch.save({"state_dict": small.state_dict()}, path)
    loaded = create_model("small_resnet", 2, weights=str(path), width=8)
    for key, value in small.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def _tiny_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1] * 8)
    images = rng.integers(0, 60, (16, 16, 16, 3), dtype=np.uint8)
    images[labels == 1, 4:12, 4:12] = 250  # a learnable cue
    return images, labels


def test_fit_is_seeded_and_leaves_global_rng_alone() -> None:
    images, labels = _tiny_arrays()
    cfg = TrainConfig(width=8, epochs=2, batch_size=8, seed=7)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = fit(ArraySource(images, labels), images, labels, 2, cfg)
    after = torch.rand(1)
    assert torch.equal(before, after)  # fit did not draw from or reseed the global generator
    b = fit(ArraySource(images, labels), images, labels, 2, cfg)
    for key, value in a.model.state_dict().items():
        assert torch.equal(b.model.state_dict()[key], value), key
    assert a.history == b.history
    c = fit(ArraySource(images, labels), images, labels, 2, TrainConfig(width=8, epochs=2, batch_size=8, seed=8))
    assert any(not torch.equal(c.model.state_dict()[k], v) for k, v in a.model.state_dict().items())
    assert len(a.history) == 2 and 1 <= a.best_epoch <= 2


def test_fit_selects_best_validation_epoch() -> None:
    images, labels = _tiny_arrays()
    result = fit(ArraySource(images, labels), images, labels, 2, TrainConfig(width=8, epochs=3, batch_size=8))
    accs = [h["val_accuracy"] for h in result.history]
    best = max(accs)
    assert accs[result.best_epoch - 1] == best
    assert result.best_epoch == max(i + 1 for i, a in enumerate(accs) if a == best)  # ties: the later epoch
    pred = predict_logits(result.model, images).argmax(1).numpy()
    assert float((pred == labels).mean()) == best  # the returned model is the selected epoch's


def test_checkpoint_rebuilds_from_file_alone(tmp_path) -> None:
    images, labels = _tiny_arrays()
    cfg = TrainConfig(width=8, epochs=1, batch_size=8)
    model = fit(ArraySource(images, labels), images, labels, 2, cfg).model
    path = tmp_path / "m.pt"
    save_classifier(path, model, cfg, 2, [0, 1], 16, {"method": "erm"})
    loaded, payload = load_classifier(path)
    assert payload["config"]["width"] == 8 and payload["image_size"] == 16 and payload["classes"] == [0, 1]
    assert payload["extra"] == {"method": "erm"}
    assert torch.equal(predict_logits(loaded, images), predict_logits(model, images))
    assert not loaded.training


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated zip"])
def test_unreadable_checkpoint_is_one_clear_error(tmp_path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(DataError) as exc:
        load_classifier(path)
    assert str(exc.value).startswith(f"{path}: cannot read checkpoint")
    assert "\n" not in str(exc.value)


def test_missing_or_foreign_checkpoint(tmp_path) -> None:
    with pytest.raises(DataError, match="checkpoint file not found"):
        load_classifier(tmp_path / "none.pt")
    for payload in ({"kind": "detector"}, torch.zeros(3), {"weight": torch.zeros(3)}):
        torch.save(payload, tmp_path / "other.pt")
        with pytest.raises(NotFittedError, match="not an autobackswap classifier checkpoint"):
            load_classifier(tmp_path / "other.pt")


# ----------------------------------------------------------------------------- augmentation and EMA
def test_crop_is_identity_at_full_side_and_seeded() -> None:
    from autobackswap.train.augment import random_resized_crop

    x = torch.rand(5, 3, 16, 16)
    assert torch.allclose(random_resized_crop(x.clone(), 1.0, 0.0, torch.Generator().manual_seed(0)), x, atol=1e-5)
    a = random_resized_crop(x.clone(), 0.5, 0.1, torch.Generator().manual_seed(1))
    b = random_resized_crop(x.clone(), 0.5, 0.1, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.allclose(a, x, atol=1e-3)
    assert a.min() >= 0.0 and a.max() <= 1.0
    # at full side the crop is a shift of up to `shift` of the side: a centred square moves, its mass stays
    img = torch.zeros(4, 3, 16, 16)
    img[..., 6:10, 6:10] = 1.0
    moved = random_resized_crop(img.clone(), 1.0, 0.1, torch.Generator().manual_seed(0))
    assert torch.allclose(moved.sum((1, 2, 3)), img.sum((1, 2, 3)), atol=1e-3)
    assert not torch.allclose(moved, img, atol=1e-3)


def test_augment_names_are_checked_before_training() -> None:
    from autobackswap.train.augment import AUGMENTS, build_augment

    assert build_augment("") is None and build_augment(" + ") is None
    chain = build_augment("crop+color")
    assert chain is not None and chain(torch.rand(2, 3, 8, 8), torch.Generator()).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown blur") as exc:
        TrainConfig(augment="crop+blur")
    assert all(name in str(exc.value) for name in AUGMENTS.names())
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="ema"):
            TrainConfig(ema=bad)


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(b.state_dict()[k], v) for k, v in a.state_dict().items())


def test_fit_with_augment_is_seeded_and_changes_training() -> None:
    images, labels = _tiny_arrays()
    cfg = TrainConfig(width=8, epochs=2, batch_size=8, augment="crop+color")
    a = fit(ArraySource(images, labels), images, labels, 2, cfg)
    b = fit(ArraySource(images, labels), images, labels, 2, cfg)
    plain = fit(ArraySource(images, labels), images, labels, 2, TrainConfig(width=8, epochs=2, batch_size=8))
    assert _state_equal(a.model, b.model) and a.history == b.history
    assert not _state_equal(a.model, plain.model)


def test_fit_with_ema_returns_the_averaged_weights() -> None:
    images, labels = _tiny_arrays()
    base = TrainConfig(width=8, epochs=3, batch_size=8)
    plain = fit(ArraySource(images, labels), images, labels, 2, base)
    # a decay of ~0 makes the average the latest weights: the same run as without EMA
    instant = fit(ArraySource(images, labels), images, labels, 2, TrainConfig(**{**base.__dict__, "ema": 1e-12}))
    for key, value in plain.model.state_dict().items():
        assert torch.allclose(instant.model.state_dict()[key].float(), value.float(), atol=1e-5), key
    assert instant.history == plain.history
    slow = fit(ArraySource(images, labels), images, labels, 2, TrainConfig(**{**base.__dict__, "ema": 0.9}))
    assert not _state_equal(slow.model, plain.model)
    pred = predict_logits(slow.model, images).argmax(1).numpy()
    assert float((pred == labels).mean()) == slow.history[slow.best_epoch - 1]["val_accuracy"]
