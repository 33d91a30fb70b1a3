"""Classifiers and detectors by their torchvision / timm names, and strict loading of weight files.

Offline throughout: every weight file is written by the test from a random-init model in the torchvision or timm
key format. Tiny networks (tv:resnet18, timm:resnet10t, EfficientNet-B0) at 32 px.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
import torchvision
from torch import nn

from autobackswap import hub
from autobackswap.data.synthetic import make_synthetic
from autobackswap.detect import Detector
from autobackswap.detect.model import create_backbone
from autobackswap.errors import AutoBackSwapError, DataError
from autobackswap.experiment import ExperimentConfig, run_experiment, run_key
from autobackswap.methods.base import parse_method_spec
from autobackswap.train.loop import TrainConfig, load_classifier, predict_logits, save_classifier
from autobackswap.train.models import create_model
from autobackswap.weights import load_weights, weights_key

pytestmark = pytest.mark.usefixtures("torch_single_thread")

MEAN = torch.tensor(hub.IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(hub.IMAGENET_STD).view(1, 3, 1, 1)


def _x(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


class Files(SimpleNamespace):
    tv: Path  # torchvision resnet18 (3 classes), a bare state dict
    timm: Path  # timm resnet10t (3 classes), safetensors
    timm_pt: Path  # the same inside a training checkpoint ({"state_dict": ..., "epoch": 3})
    ddp: Path  # tv with every key prefixed by module.
    headless: Path  # tv without fc.*
    tv_model: nn.Module
    timm_model: nn.Module


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """Weight files in the reference formats, written from random-init models (kept beside them)."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    tv = torchvision.models.get_model("resnet18", num_classes=3).eval()
    tm = timm.create_model("resnet10t", num_classes=3).eval()
    f = Files(tv=root / "resnet18.pth", timm=root / "resnet10t.safetensors", timm_pt=root / "resnet10t.pt",
              ddp=root / "ddp.pth", headless=root / "headless.pth", tv_model=tv, timm_model=tm)
    torch.save(tv.state_dict(), f.tv)
    safetensors.torch.save_file(tm.state_dict(), str(f.timm))
    torch.save({"state_dict": tm.state_dict(), "epoch": 3}, f.timm_pt)
    torch.save({f"module.{k}": v for k, v in tv.state_dict().items()}, f.ddp)
    torch.save({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}, f.headless)
    return f


# ----------------------------------------------------------------------------- strict loading, files that fit
def test_torchvision_file_loads_and_gives_identical_outputs(files: Files) -> None:
    ref = files.tv_model
    model = create_model("tv:resnet18", 3, pretrained=str(files.tv)).eval()
    x = _x()
    with torch.no_grad():
        assert torch.equal(model(x), ref((x - MEAN) / STD))  # normalisation inside forward, input in [0, 1]
        assert model.forward_features(x).shape == (2, model.num_features) == (2, 512)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 3


@pytest.mark.parametrize("key", ["timm", "timm_pt"])
def test_timm_file_loads_and_gives_identical_outputs(files: Files, key: str) -> None:
    ref = files.timm_model
    model = create_model("timm:resnet10t", 3, pretrained=str(getattr(files, key))).eval()
    x = _x()
    with torch.no_grad():
        assert torch.equal(model(x), ref((x - MEAN) / STD))
        assert torch.allclose(model.head(model.forward_features(x)), model(x))


def test_ddp_prefix_and_dropped_head_load_on_purpose(files: Files, caplog: pytest.LogCaptureFixture) -> None:
    ref = files.tv_model
    x = _x()
    with caplog.at_level(logging.INFO, logger="autobackswap.weights"):
        ddp = create_model("tv:resnet18", 3, pretrained=str(files.ddp)).eval()
    assert "stripped the 'module.' prefix" in caplog.text
    with torch.no_grad():
        assert torch.equal(ddp(x), ref((x - MEAN) / STD))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="autobackswap.weights"):
        headless = create_model("tv:resnet18", 2, pretrained=str(files.headless)).eval()
    assert "the file has no classification head" in caplog.text
    # ImageNet-style file into a model for 2 classes: the body loads, the head is sized to the data
    with caplog.at_level(logging.INFO, logger="autobackswap.weights"):
        other = create_model("tv:resnet18", 2, pretrained=str(files.tv)).eval()
    assert "head is of another size" in caplog.text
    with torch.no_grad():
        feats = ref.fc.register_forward_hook(lambda m, i, o: setattr(m, "seen", i[0]))
        ref((x - MEAN) / STD)
        feats.remove()
        assert torch.equal(headless.forward_features(x), ref.fc.seen)
        assert torch.equal(other.forward_features(x), ref.fc.seen)
    assert headless.head.out_features == 2


def test_own_checkpoint_reloads_as_model_weights(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = create_model("small_resnet", 2, width=8)
    path = tmp_path / "model.pt"
    save_classifier(path, model, TrainConfig(width=8), 2, [0, 1], 32)
    loaded = create_model("small_resnet", 2, weights=str(path), width=8)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- strict loading, files that do not
def _error(model: nn.Module, path: Path, target: str) -> str:
    with pytest.raises(AutoBackSwapError) as exc:
        load_weights(model, path, "weights", target)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_each_wrong_file_is_one_clear_line(files: Files, tmp_path: Path) -> None:
    tv = create_model("tv:resnet18", 3)
    # another architecture (timm's keys), named with its first keys
    message = _error(tv, files.timm, "classifier 'tv:resnet18'")
    assert "missing keys (net." in message and "unexpected keys (" in message
    assert "another architecture (" in message and "of its 86 key names are this model's; its first keys: bn1.bias" in message
    # a DDP checkpoint of another architecture
    torch.save({f"module.{k}": v for k, v in files.timm_model.state_dict().items()}, tmp_path / "ddp_timm.pt")
    assert "a DDP checkpoint ('module.' prefix, accepted)" in _error(tv, tmp_path / "ddp_timm.pt", "classifier")
    # the same architecture at another width
    torch.save(create_model("small_resnet", 2, width=8).state_dict(), tmp_path / "w8.pt")
    message = _error(create_model("small_resnet", 2, width=16), tmp_path / "w8.pt", "classifier 'small_resnet'")
    assert "of another shape" in message and "the same architecture at another size" in message
    # a detector checkpoint passed as classifier weights, and a classifier checkpoint as detector weights
    det_path, clf_path = tmp_path / "detector.pt", tmp_path / "model.pt"
    torch.save({"kind": "detector", "config": {"backbone": "fcn_small"},
                "state_dict": create_backbone("fcn_small", 4).state_dict()}, det_path)
    save_classifier(clf_path, create_model("small_resnet", 2, width=8), TrainConfig(width=8), 2, [0, 1], 32)
    assert "an autobackswap detector checkpoint (backbone 'fcn_small'), not classifier weights" in _error(
        create_model("small_resnet", 2, width=8), det_path, "classifier 'small_resnet'")
    assert "an autobackswap classifier checkpoint (model 'small_resnet'), not detector weights" in _error(
        create_backbone("fcn_small", 4), clf_path, "detector backbone 'fcn_small'")


@pytest.mark.parametrize("name, content, expected", [
    ("garbage.pt", b"not a checkpoint", "not a checkpoint at all"),
    ("empty.pth", b"", "not a checkpoint at all"),
    ("garbage.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}", "not a checkpoint at all"),
])
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as exc:
        load_weights(create_model("small_resnet", 2, width=8), path)
    assert "\n" not in str(exc.value)


def test_files_without_a_state_dict(tmp_path: Path) -> None:
    model = create_model("small_resnet", 2, width=8)
    cases = {"pickled.pt": (nn.Linear(2, 2), "pickled Python objects"),
             "optim.pt": (torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1).state_dict(), "an optimizer's state"),
             "tensor.pt": (torch.zeros(3), "a single tensor")}
    for name, (obj, expected) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(DataError, match=expected):
            load_weights(model, tmp_path / name)
    with pytest.raises(DataError, match="weight file not found"):
        create_model("small_resnet", 2, weights=str(tmp_path / "missing.pt"))


def test_tags_resolve_offline_and_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub.data_config("tv", "efficientnet_b0", "IMAGENET1K_V1")["interpolation"] == "bicubic"
    cfg = hub.data_config("timm", "resnet50", "resnet50.tv_in1k")
    assert cfg["mean"] == hub.IMAGENET_MEAN and cfg["weights"] == "resnet50.tv_in1k"
    with pytest.raises(KeyError, match="valid: IMAGENET1K_V1"):
        hub.data_config("tv", "resnet18", "IMAGENET9K")
    with pytest.raises(KeyError, match="no pretrained tag"):
        hub.data_config("timm", "resnet50", "no_such_tag")
    with pytest.raises(AutoBackSwapError, match="is for timm:resnet18, not timm:resnet50"):
        hub.timm_name("resnet50", "resnet18.a1_in1k")
    with pytest.raises(AutoBackSwapError, match="needs a torchvision or timm model"):
        create_model("small_resnet", 2, pretrained="IMAGENET1K_V1")
    # a tag is fetched the library's way; offline that is one clear error pointing at a local file
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(AutoBackSwapError, match="cannot fetch the pretrained weights 'IMAGENET1K_V1'.*--pretrained PATH"):
        create_model("tv:resnet18", 2, pretrained="IMAGENET1K_V1")


def test_saved_model_with_a_tag_rebuilds_offline(tmp_path: Path) -> None:
    cfg = TrainConfig(model="tv:resnet18", pretrained="IMAGENET1K_V1")
    model = create_model("tv:resnet18", 2, pretrained="IMAGENET1K_V1", load=False).eval()  # random init, tag's norms
    save_classifier(tmp_path / "m.pt", model, cfg, 2, [0, 1], 32)
    loaded, payload = load_classifier(tmp_path / "m.pt")
    images = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    assert payload["config"]["pretrained"] == "IMAGENET1K_V1"
    assert torch.equal(predict_logits(loaded, images), predict_logits(model, images))


# ----------------------------------------------------------------------------- run keys
def test_run_key_follows_the_weight_files_bytes(files: Files, tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    shutil.copy(files.tv, path)
    cfg = ExperimentConfig(data="unused", train=TrainConfig(model="tv:resnet18", pretrained=str(path)))
    key = run_key("erm", 0, cfg, "data")
    shutil.copy(files.tv, tmp_path / "elsewhere.pth")  # same bytes, another path: the same run
    assert run_key("erm", 0, replace(cfg, train=replace(cfg.train, pretrained=str(tmp_path / "elsewhere.pth"))),
                   "data") == key
    shutil.copy(files.ddp, path)  # other bytes under the same path: another run
    assert run_key("erm", 0, cfg, "data") != key
    weights = replace(cfg, train=replace(cfg.train, pretrained=None, model_weights=str(path)))
    before = run_key("erm", 0, weights, "data")
    shutil.copy(files.headless, path)
    assert run_key("erm", 0, weights, "data") != before
    # the detector's weights enter autobackswap's key the same way
    spec = f"autobackswap:detector_backbone=tv:efficientnet_b0:detector_weights={path}"
    assert parse_method_spec(spec)[1]["detector_backbone"] == "tv:efficientnet_b0"
    before = run_key(spec, 0, cfg, "data")
    shutil.copy(files.tv, path)
    assert run_key(spec, 0, cfg, "data") != before
    assert weights_key(None) is None and weights_key("IMAGENET1K_V1") == "tag:IMAGENET1K_V1"


def test_earlier_run_keys_stay_valid() -> None:
    """``pretrained`` is a later field: a config without it has the key it had before the field existed."""
    from autobackswap.train.loop import train_settings

    assert "pretrained" not in train_settings(TrainConfig())
    assert train_settings(TrainConfig(pretrained="IMAGENET1K_V1"))["pretrained"] == "tag:IMAGENET1K_V1"


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def dfr_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No minority group in train, every group in val (DFR can run)."""
    return make_synthetic(tmp_path_factory.mktemp("dfr") / "data", n_train=32, n_val=24, n_test=16, image_size=32,
                          correlation=1.0, val_correlation=0.5, seed=0)


def test_tv_resnet18_erm_and_dfr_through_experiment(dfr_data: Path, tmp_path: Path) -> None:
    cfg = ExperimentConfig(data=str(dfr_data), methods=["erm", "dfr"], image_size=32, report=False,
                           train=TrainConfig(model="tv:resnet18", epochs=1, batch_size=16))
    results = run_experiment(cfg, tmp_path / "run")
    for method in ("erm", "dfr"):
        entry = results["methods"][method]
        assert "skipped" not in entry, entry.get("skipped")
        assert 0.0 <= entry["test"]["worst_group_accuracy"] <= 1.0
        assert "bg_gap" in entry["diagnostics"]
    model, payload = load_classifier(tmp_path / "run" / "models" / "dfr_seed0.pt")
    assert payload["config"]["model"] == "tv:resnet18" and model.head.out_features == 2


def test_timm_model_trains_through_experiment(tiny_synthetic: Path, tmp_path: Path) -> None:
    cfg = ExperimentConfig(data=str(tiny_synthetic), methods=["erm"], image_size=32, report=False, diagnostics=False,
                           train=TrainConfig(model="timm:mobilenetv3_small_050", epochs=1, batch_size=16))
    results = run_experiment(cfg, tmp_path / "run")
    assert 0.0 <= results["methods"]["erm"]["test"]["average_accuracy"] <= 1.0
    again = run_experiment(cfg, tmp_path / "run")  # reused from its key, rebuilt from the checkpoint alone
    assert again["methods"]["erm"]["test"] == results["methods"]["erm"]["test"]


# ----------------------------------------------------------------------------- the paper's detector
def _disks(n: int = 12, size: int = 32, grid: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    images = rng.integers(0, 90, (n, size, size, 3)).astype(np.uint8)
    grids = np.zeros((n, grid, grid), bool)
    for i in range(n):
        cy, cx = rng.uniform(10, 22, 2)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < 49
        images[i][disk] = (230, 200, 40)
        grids[i] = disk.reshape(grid, size // grid, grid, size // grid).mean((1, 3)) > 0.25
    return images, grids


def test_efficientnet_b0_detector_fits_predicts_and_reloads(files: Files, tmp_path: Path) -> None:
    images, grids = _disks()
    weights = tmp_path / "efficientnet_b0.pth"  # an ImageNet-style file: its classifier is left out on purpose
    torch.save(torchvision.models.efficientnet_b0().state_dict(), weights)
    det = Detector(backbone="tv:efficientnet_b0", weights=str(weights), grid=8, epochs=1, batch_size=6).fit(images, grids)
    p = det.predict_proba(images)
    assert p.shape == (12, 8, 8) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    head = det.model_.head
    assert [type(m).__name__ for m in head] == ["Dropout", "Linear", "GELU", "Linear"]
    assert head[1].out_features == 2 * 64 and head[3].out_features == 64  # the reference's MLP, G = 8
    det.save(tmp_path / "det.pt")
    weights.unlink()  # the checkpoint carries its config and weights: the weight file is not needed again
    again = Detector.load(tmp_path / "det.pt")
    assert again.config.backbone == "tv:efficientnet_b0" and again.config.weights is None
    assert np.array_equal(again.predict_proba(images), p)
    with pytest.raises(AutoBackSwapError, match="not detector weights"):
        Detector(backbone="tv:efficientnet_b0", grid=8, epochs=1,
                 weights=str(_classifier_checkpoint(tmp_path))).fit(images, grids)


def _classifier_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "clf.pt"
    save_classifier(path, create_model("small_resnet", 2, width=8), TrainConfig(width=8), 2, [0, 1], 32)
    return path


def test_timm_feature_map_detector_and_unknown_names() -> None:
    model = create_backbone("timm-map:mobilenetv3_small_050", 8).eval()
    with torch.no_grad():
        assert model(_x()).shape == (2, 8, 8)
        assert create_backbone("timm:mobilenetv3_small_050", 4).eval()(_x()).shape == (2, 4, 4)
    with pytest.raises(KeyError, match="unknown detector backbone 'tv:efficientnet_b9'.*close: efficientnet_b"):
        Detector(backbone="tv:efficientnet_b9")
    with pytest.raises(AutoBackSwapError, match="needs a torchvision or timm backbone"):
        create_backbone("fcn", 8, "IMAGENET1K_V1")


def test_cli_flags_reach_the_configs() -> None:
    from autobackswap.cli import build_parser, settings
    from autobackswap.pipeline import PipelineConfig

    args = build_parser().parse_args(["experiment", "DATA", "--out", "RUN", "--model", "tv:resnet50", "--pretrained",
                                      "IMAGENET1K_V1", "--detector-backbone", "tv:efficientnet_b0",
                                      "--detector-weights", "IMAGENET1K_V1", "--methods", "erm,autobackswap"])
    exp = settings(args, args.data)
    cfg = exp.train
    assert (cfg.model, cfg.pretrained, cfg.model_weights) == ("tv:resnet50", "IMAGENET1K_V1", None)
    detector = PipelineConfig.from_options(exp.method_options).detector
    assert (detector.backbone, detector.weights) == ("tv:efficientnet_b0", "IMAGENET1K_V1")
