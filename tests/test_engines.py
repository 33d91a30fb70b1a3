"""Separation engines: the local process pool and the Ray Data pipeline write the same files, byte for
byte, as the single-process ``separate``; both resume; bad engine names and jobs are clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autobackswap.data.layout import load_images, load_segmentations, read_dataset
from autobackswap.detect.detector import Detector
from autobackswap.errors import DataError
from autobackswap.pipeline import PipelineConfig
from autobackswap.separate.engines import ENGINES, SeparationJob, create_engine, pack_banks, run_job, separate
from autobackswap.separate.run import load_banks

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SIZE = 32


def tree(folder: Path) -> dict[str, bytes]:
    """Every cache file (cut-outs, backgrounds, summary, config) by relative path; the summary without
    the confidence entries (a detector job has them, the precomputed-grid reference has none)."""
    names = [p for sub in ("fg", "bg") for p in sorted((folder / sub).iterdir())]
    names += [folder / "config.json"]
    files = {str(p.relative_to(folder)): p.read_bytes() for p in names}
    summary = json.loads((folder / "summary.json").read_text())
    files["summary.json"] = json.dumps({k: v for k, v in summary.items()
                                        if k not in ("confidence_mean", "least_confident")}).encode()
    return files


@pytest.fixture(scope="module")
def setup(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny train split, its GT masks, and a detector trained on 20 of its images (saved)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset = read_dataset(tiny_synthetic)
        records = dataset.split("train")
        images = load_images(records, SIZE)
        seg = load_segmentations(dataset, records, SIZE)
        grids = seg.reshape(len(seg), 8, 4, 8, 4).mean((2, 4)) > 0.25 * 255
        det = Detector(grid=8, width=16, epochs=40, seed=0).fit(images[:20], grids[:20])
    finally:
        torch.set_num_threads(threads)
    root = tmp_path_factory.mktemp("engines")
    det.save(root / "detector.pt")
    cfg = PipelineConfig().separation_config(seed=3)
    reference = root / "reference"
    separate(images, reference, cfg, p_fg=det.predict_proba(images), extra_config={"detector": "d"})
    counts = json.loads((reference / "summary.json").read_text())["counts"]
    assert counts["ok"] >= 30, counts  # the masks are real: most images are cut out and inpainted
    return {"dataset": dataset, "records": records, "images": images, "seg": seg, "cfg": cfg, "root": root,
            "detector": str(root / "detector.pt"), "reference": reference}


def job(s: dict[str, Any], out: Path, images: bool = True, oracle: bool = False, chunk: int = 256) -> SeparationJob:
    recs = s["records"]
    common: dict[str, Any] = {"paths": [str(r.path) for r in recs], "rows": [r.row for r in recs], "image_size": SIZE,
                              "images": s["images"] if images else None, "chunk_size": chunk}
    if oracle:
        return SeparationJob(out, s["cfg"], segmentations=[str(s["dataset"].segmentation_path(r)) for r in recs],
                             **common)
    return SeparationJob(out, s["cfg"], detector=s["detector"], extra_config={"detector": "d"}, **common)


def test_local_pool_writes_the_same_files_as_separate(setup: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "pool"
    result = run_job(job(setup, out, images=False), "local", workers=2)  # 2 spawned workers, images decoded there
    assert result.n == 40 and sum(result.counts.values()) == 40
    assert tree(out) == tree(setup["reference"])
    serial = tmp_path / "serial"
    run_job(job(setup, serial), "local", workers=1)  # in this process, images from the array
    assert tree(serial) == tree(setup["reference"])
    assert (out / "confidence.csv").read_bytes() == (serial / "confidence.csv").read_bytes()
    assert json.loads((out / "summary.json").read_text())["least_confident"] == \
        json.loads((serial / "summary.json").read_text())["least_confident"]


def test_oracle_job_matches_separate_with_segmentations(setup: dict[str, Any], tmp_path: Path) -> None:
    reference = tmp_path / "ref"
    separate(setup["images"], reference, setup["cfg"], segmentations=setup["seg"])
    out = tmp_path / "oracle"
    run_job(job(setup, out, oracle=True), "local", workers=1)
    ref, got = tree(reference), tree(out)
    assert ref.keys() == got.keys()
    assert all(ref[k] == got[k] for k in ref if k != "config.json")
    assert json.loads(got["config.json"])["source"] == "ground_truth"


def test_resume_skips_done_images_and_recomputes_partial_chunks_identically(setup: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    shutil.copytree(setup["reference"], out)
    for i in (0, 7, 8, 39):  # chunks of 8: chunk 0 loses two images, chunk 1 one, chunk 4 one
        (out / "fg" / f"{i:06d}.png").unlink()
    (out / "bg" / f"{21:06d}.png").unlink()  # a cut-out without its background is not done either
    stamp = (out / "fg" / f"{30:06d}.png").stat().st_mtime_ns
    assert [(a, b, todo) for a, b, todo in job(setup, out, chunk=8).pending()] == \
        [(0, 8, [0, 7]), (8, 16, [8]), (16, 24, [21]), (32, 40, [39])]
    run_job(job(setup, out, chunk=8), "local", workers=2)
    assert tree(out) == tree(setup["reference"])
    assert (out / "fg" / f"{30:06d}.png").stat().st_mtime_ns == stamp  # untouched
    # the chunk done in the earlier run (24..31) is scored too: one confidence row per image, the same
    # rows a fresh run writes
    fresh = tmp_path / "fresh"
    run_job(job(setup, fresh, chunk=8), "local", workers=1)
    assert (out / "confidence.csv").read_bytes() == (fresh / "confidence.csv").read_bytes()
    assert sorted(int(line.split(",")[0]) for line in (out / "confidence.csv").read_text().splitlines()[1:]) == \
        list(range(40))


def test_pack_banks_equals_load_banks_and_is_reused(setup: dict[str, Any]) -> None:
    fg, bg = pack_banks(setup["reference"], 40)
    ref_fg, ref_bg = load_banks(setup["reference"], 40)
    assert fg.shape == (40, SIZE, SIZE, 4) and bg.shape == (40, SIZE, SIZE, 3)
    assert np.array_equal(fg[:], ref_fg) and np.array_equal(bg[:], ref_bg)
    stamp = fg.path.stat().st_mtime_ns
    again, _ = pack_banks(setup["reference"], 40)
    assert again.path.stat().st_mtime_ns == stamp


def test_ray_pipeline_writes_the_same_files_byte_for_byte(setup: dict[str, Any], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray"
    for sub in ("fg", "bg"):  # resume: three images already done are skipped, not rewritten
        (out / sub).mkdir(parents=True)
        for i in (0, 1, 2):
            shutil.copy(setup["reference"] / sub / f"{i:06d}.png", out / sub)
    stamp = (out / "fg" / f"{1:06d}.png").stat().st_mtime_ns
    result = run_job(job(setup, out, images=False, chunk=16), "ray", workers=2)  # a local instance, 2 CPUs
    assert not ray.is_initialized()  # the instance it started is shut down again
    assert sum(result.counts.values()) == 40
    assert tree(out) == tree(setup["reference"])
    assert (out / "fg" / f"{1:06d}.png").stat().st_mtime_ns == stamp
    local = tmp_path / "local"
    run_job(job(setup, local, chunk=16), "local", workers=1)
    assert (out / "confidence.csv").read_bytes() == (local / "confidence.csv").read_bytes()


def test_engine_registry_and_errors(setup: dict[str, Any], tmp_path: Path) -> None:
    assert ENGINES.names() == ["local", "ray"]
    with pytest.raises(KeyError, match="unknown separation engine 'spark'; valid names: local, ray"):
        create_engine("spark")
    with pytest.raises(KeyError, match="valid names: local, ray"):
        PipelineConfig(engine="dask")
    with pytest.raises(ValueError, match="exactly one mask source"):
        SeparationJob(tmp_path, setup["cfg"], ["a.png"], [2], SIZE)
    with pytest.raises(ValueError, match="2 image paths but 1 rows"):
        SeparationJob(tmp_path, setup["cfg"], ["a.png", "b.png"], [2], SIZE, detector="d.pt")
    bad = job(setup, tmp_path / "bad", images=False)
    bad.paths[5] = str(tmp_path / "missing.png")
    with pytest.raises(DataError, match=rf"missing.png, row {setup['records'][5].row}: image file not found"):
        run_job(bad, "local", workers=1)
    assert not (tmp_path / "bad" / "summary.json").exists()
