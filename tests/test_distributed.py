"""Training under torchrun: sharding, per-rank randomness, and 2 CPU processes (gloo) against one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autobackswap.cli import main
from autobackswap.errors import AutoBackSwapError
from autobackswap.runtime import DistInfo, rank_generator
from autobackswap.train.sources import ArraySource, ShardedSource, shard_batches


def test_shard_batches_split_each_global_batch_disjointly() -> None:
    order = torch.arange(10)
    ranks = [list(shard_batches(order, 4, r, 2)) for r in range(2)]
    # global batches [0..3], [4..7]; the last one, [8, 9], cannot give each rank two images: dropped
    assert [b.tolist() for b in ranks[0]] == [[0, 2], [4, 6]]
    assert [b.tolist() for b in ranks[1]] == [[1, 3], [5, 7]]
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    three = [torch.cat(list(shard_batches(perm, 12, r, 3))) for r in range(3)]  # 4 batches of 12, 2 left over
    seen = torch.cat(three)
    assert len(seen) == len(set(seen.tolist())) == 48 and all(len(t) == 16 for t in three)
    with pytest.raises(AutoBackSwapError, match="batch size 3 is too small for 2 processes"):
        list(shard_batches(order, 3, 0, 2))


def test_rank_streams_differ_per_rank_and_repeat_per_seed() -> None:
    draws = [torch.rand(5, generator=rank_generator(7, r)) for r in range(3)]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    assert torch.equal(draws[1], torch.rand(5, generator=rank_generator(7, 1)))
    assert not torch.equal(draws[1], torch.rand(5, generator=rank_generator(8, 1)))


def test_sharded_source_walks_the_single_process_order() -> None:
    images = np.arange(12, dtype=np.uint8).repeat(2 * 2 * 3).reshape(12, 2, 2, 3)
    labels = np.arange(12) % 2
    source = ArraySource(images, labels, hflip=False)
    single = list(source.batches(0, 4, torch.Generator().manual_seed(3)))
    parts = []
    for rank in range(2):
        sharded = ShardedSource(source, DistInfo(rank, 2), torch.Generator().manual_seed(3))
        parts.append(list(sharded.batches(0, 4, rank_generator(3, rank))))
        assert sharded.samples_seen == 6
    assert len(single) == len(parts[0]) == len(parts[1]) == 3

    def index(x: torch.Tensor) -> list[int]:  # image i has every pixel equal to i
        return x[:, 0, 0, 0].mul(255).round().long().tolist()

    for step, (x, y) in enumerate(single):  # rank r holds every other image of each global batch
        for rank in range(2):
            xr, yr = parts[rank][step]
            assert index(xr) == index(x)[rank::2] and torch.equal(yr, y[rank::2])
    with pytest.raises(AutoBackSwapError, match="cannot be sharded across processes"):
        ShardedSource(object(), DistInfo(0, 2), torch.Generator())


def test_commands_other_than_train_refuse_torchrun(monkeypatch: pytest.MonkeyPatch, tiny_synthetic: Path,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["experiment", str(tiny_synthetic), "--out", str(tmp_path / "run")]) == 2
    assert "only `train` runs under torchrun" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 2 processes vs 1
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_train(args: list[str], nproc: int | None) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    def command() -> list[str]:
        if nproc is None:
            return [sys.executable, "-m", "autobackswap", "train", *args]
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "autobackswap", "train", *args]

    proc = subprocess.run(command(), env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and nproc is not None:
        # A worker killed by a signal before training (seen twice on a loaded 2-core machine, never reproduced
        # alone) is retried once on a fresh port; a real failure fails again and is reported with both logs.
        first = proc.stderr[-1500:]
        proc = subprocess.run(command(), env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"first attempt:\n{first}\nsecond attempt:\n{proc.stderr[-1500:]}"
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "train.json").read_text())


SMALL = ["--image-size", "32", "--batch-size", "16", "--width", "8"]


def test_two_gloo_processes_agree_with_one(tiny_synthetic: Path, tmp_path: Path) -> None:
    """ERM without flips: both runs see the same global batches (one permutation per epoch from the
    seed), so they differ only by per-rank BatchNorm statistics and the order of gradient sums."""
    common = [str(tiny_synthetic), *SMALL, "--epochs", "3", "--no-hflip"]
    one = run_train([*common, "--out", str(tmp_path / "one")], None)
    two = run_train([*common, "--out", str(tmp_path / "two")], 2)
    assert one["distributed"] == {}
    dist = two["distributed"]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo" and dist["replicas_in_sync"] is True
    assert dist["samples_per_rank"] == [60, 60]  # 40 images = global batches 16+16+8, half each, 3 epochs
    loss1 = [h["train_loss"] for h in one["history"]]
    loss2 = [h["train_loss"] for h in two["history"]]
    assert abs(loss1[0] - loss2[0]) < 0.05, (loss1, loss2)  # same data, same init: nearly the same first epoch
    assert loss2[-1] < loss2[0]
    assert abs(one["val"]["average_accuracy"] - two["val"]["average_accuracy"]) <= 0.125  # 2 of 16 images
    assert (tmp_path / "two" / "model.pt").is_file()


def test_autobackswap_under_torchrun_rank0_separates_and_writes(tiny_synthetic: Path, tmp_path: Path) -> None:
    out = tmp_path / "abs"
    result = run_train([str(tiny_synthetic), *SMALL, "--epochs", "1", "--method", "autobackswap", "--grid", "8",
                        "--label-budget", "20", "--stream", "--out", str(out)], 2)
    dist = result["distributed"]
    assert dist["replicas_in_sync"] is True and dist["samples_per_rank"] == [20, 20]
    assert result["separation_counts"]["ok"] > 0 and 0.0 < result["mask_iou"] <= 1.0
    assert 0.0 <= result["mask_bg_share"] <= 1.0 and 0.0 <= result["mask_fg_kept"] <= 1.0
    separations = list((out / "separation").iterdir())
    assert len(separations) == 1  # one separation, written by rank 0 and read by rank 1
    assert len(list((separations[0] / "fg").glob("*.png"))) == 40
    assert (separations[0] / "contact_sheet.png").is_file() and (separations[0] / "banks" / "fg.npy").is_file()
    assert not list(out.rglob("*.tmp"))  # no half-written file from a second writer
