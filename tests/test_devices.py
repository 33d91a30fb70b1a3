"""Devices and mixed precision: one resolver, one clear error per unavailable device, AMP by device,
composition parameters that move to the device, and the same seed giving the same run on the CPU."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autobackswap import runtime
from autobackswap.cli import main
from autobackswap.compose.functional import JitterConfig, sample_params
from autobackswap.compose.swap import BackgroundSwap, SwapConfig
from autobackswap.detect.detector import DetectorConfig
from autobackswap.errors import AutoBackSwapError
from autobackswap.methods.erm_aug import AugmentedSource
from autobackswap.runtime import Precision, check_device_spec, resolve_amp, resolve_device
from autobackswap.train.augment import build_augment
from autobackswap.train.loop import TrainConfig
from autobackswap.train.sources import ArraySource, SwapSource

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without CUDA or MPS, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(runtime, "mps_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


@pytest.mark.parametrize("spec, normal", [("auto", "auto"), (" CPU ", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"),
                                          ("mps", "mps")])
def test_device_specs_are_normalised(spec: str, normal: str) -> None:
    assert check_device_spec(spec) == normal


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cpu:0", "tpu", ""])
def test_an_unknown_device_spec_is_one_clear_error(spec: str) -> None:
    with pytest.raises(ValueError, match=r"expected one of auto, cpu, cuda, cuda:N, mps"):
        check_device_spec(spec)
    with pytest.raises(ValueError, match="expected one of"):
        TrainConfig(device=spec)
    with pytest.raises(ValueError, match="expected one of"):
        DetectorConfig(device=spec)


@pytest.mark.usefixtures("no_gpu")
def test_auto_is_the_cpu_without_a_gpu() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.usefixtures("two_gpus")
def test_auto_picks_the_gpu_and_cuda_n_picks_that_one() -> None:
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(AutoBackSwapError, match=r"^device 'cuda:2': this machine has 2 CUDA devices \(cuda:0 to cuda:1\)$"):
        resolve_device("cuda:2")


@pytest.mark.usefixtures("no_gpu")
@pytest.mark.parametrize("spec, message", [("cuda", "device 'cuda': no CUDA GPU is available"),
                                           ("cuda:0", "device 'cuda:0': no CUDA GPU is available"),
                                           ("mps", "device 'mps': Apple's MPS backend is not available")])
def test_an_unavailable_device_is_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(AutoBackSwapError, match=re.escape(message)) as info:
        resolve_device(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("amp, device, bf16, expected", [
    (None, "cpu", None, Precision()),  # automatic: off on the CPU
    (None, "mps", None, Precision()),
    (None, "cuda", True, Precision(torch.bfloat16)),  # automatic: on for CUDA, bf16 where supported
    (None, "cuda", False, Precision(torch.float16, scaler=True)),  # else fp16 with loss scaling
    (False, "cuda", True, Precision()),
    (True, "cuda", False, Precision(torch.float16, scaler=True)),
    (True, "cpu", None, Precision(torch.bfloat16)),  # asked for on the CPU: bf16 autocast, no scaler
])
def test_amp_resolution(amp: bool | None, device: str, bf16: bool | None, expected: Precision) -> None:
    assert resolve_amp(amp, torch.device(device), bf16_supported=bf16) == expected


def test_precision_names() -> None:
    assert [Precision().name, Precision(torch.bfloat16).name, Precision(torch.float16, True).name] == ["fp32", "bf16", "fp16"]


def test_to_device_on_the_cpu_is_the_same_tensor() -> None:
    x = torch.arange(6)
    assert runtime.to_device(x, torch.device("cpu")) is x


def test_swap_params_move_their_numbers_and_keep_their_indices_on_the_cpu() -> None:
    """Jitter goes to the device; which images swap and which backgrounds they get stay on the CPU (they
    index the banks and decide control flow without a device sync)."""
    donors = [torch.tensor([0, 1]), torch.tensor([2, 3])]
    params = sample_params(4, donors, JitterConfig(), 1.0, torch.Generator().manual_seed(0),
                           shuffle_bg_channels=True, distractor=1.0)
    assert params.to(torch.device("cpu")) is params
    moved = params.to(torch.device("meta"))
    assert {moved.scale.device.type, moved.angle.device.type, moved.shift.device.type} == {"meta"}
    assert moved.bg_channels is not None and moved.bg_channels.device.type == "meta"
    assert moved.distractor is not None and moved.distractor.scale.device.type == "meta"
    assert moved.swap is params.swap and moved.bg_index is params.bg_index
    assert moved.distractor.index is params.distractor.index  # type: ignore[union-attr]


@pytest.mark.parametrize("config", [SwapConfig(), SwapConfig(p=0.5, bg_shuffle=True, distractor=0.5, bg_only=0.5)])
def test_sources_build_their_batches_on_their_device(config: SwapConfig) -> None:
    """The meta device stands in for a GPU: any op that mixes it with a CPU tensor fails there. Composites
    (partial swaps, shuffled channels, distractors, extra backgrounds), flips, ERM batches, the batch
    augmentations and erm_aug's MixUp / CutMix all come out on the device; targets stay on the CPU (the
    loop copies them)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)
    fg = np.zeros((8, 16, 16, 4), np.uint8)
    fg[:, 4:12, 4:12] = 200
    labels = np.arange(8) % 2
    swap = BackgroundSwap(fg, rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8), labels, config)
    meta = torch.device("meta")
    x, y = SwapSource(images, labels, swap).to(meta).batch(torch.arange(8), torch.Generator().manual_seed(0))
    assert x.device == meta and y.device.type == "cpu" and len(x) == 8 + round(8 * config.bg_only)
    x, y = ArraySource(images, labels).to(meta).batch(torch.arange(8), torch.Generator().manual_seed(0))
    assert x.device == meta and x.shape == (8, 3, 16, 16)
    augment = build_augment("crop+color+resized_crop")
    assert augment is not None and augment(x, torch.Generator().manual_seed(0)).device == meta
    mixed = AugmentedSource(images, labels, 2, ("crop", "mixup", "cutmix")).to(meta)
    assert {b[0].device for b in mixed.batches(0, 4, torch.Generator().manual_seed(0))} == {meta}


def test_a_source_on_the_cpu_builds_the_same_batches() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(6) % 2
    a = ArraySource(images, labels).batch(torch.arange(6), torch.Generator().manual_seed(4))[0]
    b = ArraySource(images, labels).to(torch.device("cpu")).batch(torch.arange(6), torch.Generator().manual_seed(4))[0]
    assert torch.equal(a, b)


@pytest.mark.usefixtures("no_gpu")
def test_cli_device_errors_are_one_line(tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", str(tiny_synthetic), "--out", str(tmp_path / "run"), "--image-size", "32", "--epochs", "1",
                 "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("autobackswap train: error: device 'cuda': no CUDA GPU is available")
    assert err.count("\n") == 1
    code = main(["fit-detector", str(tiny_synthetic), "--out", str(tmp_path / "det"), "--device", "gpu"])
    err = capsys.readouterr().err
    assert code == 2 and "device 'gpu': expected one of auto, cpu, cuda, cuda:N, mps" in err and err.count("\n") == 1


def _comparable(value: Any, run: str) -> Any:
    """``results.json`` without timings, with the run folder's path replaced by a placeholder (the
    separation folder's digest covers the detector's path, so it is replaced too)."""
    if isinstance(value, dict):
        return {k: _comparable(v, run) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_comparable(v, run) for v in value]
    if isinstance(value, str):
        return re.sub(r"abs_[0-9a-f]+", "abs_<digest>", value.replace(run, "<RUN>"))
    return value


def test_two_cpu_runs_with_one_seed_give_the_same_results(tiny_synthetic: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``--device cpu`` twice, into two run folders (so nothing is reused): identical results.json apart
    from timings, composition and detector included."""
    results = []
    for name in ("a", "b"):
        out = tmp_path / name
        code = main(["experiment", str(tiny_synthetic), "--methods", "erm,oracle,autobackswap:detector_epochs=2",
                     "--seeds", "3", "--image-size", "32", "--epochs", "2", "--device", "cpu", "--no-diagnostics",
                     "--allow-bad-separation",
                     "--out", str(out)])
        assert code == 0, capsys.readouterr().err
        results.append(_comparable(json.loads((out / "results.json").read_text()), str(out)))
    assert results[0] == results[1]
    runs = results[0]["methods"]["oracle"]["runs"]  # the oracle composes swaps (ground-truth masks)
    assert runs[0]["device"] == "cpu" and runs[0]["precision"] == "fp32"
    assert results[0]["methods"]["autobackswap:detector_epochs=2"]["runs"][0]["patch_balanced_accuracy"] is not None
    assert results[0]["config"]["train"]["device"] == "cpu"
    assert results[0]["config"]["method_options"]["detector_device"] == "cpu"
    history = [h["train_loss"] for h in runs[0]["history"]]
    assert all(np.isfinite(history))


def test_the_labelling_assistant_trains_its_detector_on_the_device(tiny_synthetic: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from autobackswap.label import assist
    from autobackswap.label.server import create_app

    app = create_app(tiny_synthetic, tmp_path / "labels.sqlite", device="cpu")
    assert app.state.labeller.assistant.config.device == "cpu"
    seen: list[str] = []

    class Spy(assist.Detector):  # type: ignore[misc]
        def __init__(self, **params: Any) -> None:
            seen.append(params["device"])
            super().__init__(**params)

    monkeypatch.setattr(assist, "Detector", Spy)
    helper = assist.Assistant(app.state.labeller.assistant.records, app.state.labeller.store, 16,
                              assist.AssistConfig(detector_params={"width": 4, "epochs": 1}, device="cpu"),
                              images=np.zeros((len(app.state.labeller.assistant.records), 16, 16, 3), np.uint8))
    grid = np.zeros((16, 16), bool)
    grid[4:12, 4:12] = True
    for record in helper.records[:2]:
        app.state.labeller.store.put(record.img_filename, grid)
    helper.fit_now()
    assert seen == ["cpu"]


@pytest.mark.usefixtures("no_gpu")
def test_the_detector_runs_where_it_is_told_and_its_cache_ignores_the_device(tiny_synthetic: Path,
                                                                             tmp_path: Path) -> None:
    from autobackswap.data.splits import load_experiment_data
    from autobackswap.detect.detector import Detector
    from autobackswap.pipeline import PipelineConfig, fit_detector

    data = load_experiment_data(tiny_synthetic, 32, tmp_path)
    options = {"detector_epochs": 1, "detector_width": 4, "label_budget": 8}
    det, info = fit_detector(data, PipelineConfig.from_options({**options, "detector_device": "cpu"}), 0, tmp_path)
    again, info_auto = fit_detector(data, PipelineConfig.from_options(options), 0, tmp_path)
    assert info_auto["detector"] == info["detector"]  # the same cache entry: where it ran is not what it is
    assert again.config.device == "auto"
    assert PipelineConfig.from_options({**options, "detector_device": "cuda"}).settings() == \
        PipelineConfig.from_options(options).settings()  # nor does it enter a run's key
    loaded = Detector.load(info["detector"], device="cpu")
    assert np.array_equal(loaded.predict_proba(data.train.images[:4]), det.predict_proba(data.train.images[:4]))
    with pytest.raises(AutoBackSwapError, match="no CUDA GPU is available"):
        Detector.load(info["detector"], device="cuda")
