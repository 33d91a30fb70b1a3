"""The labelling app's HTTP API (fastapi.testclient), the assistant's logic and the `label` command."""

from __future__ import annotations

import csv
import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from autobackswap.cli import main
from autobackswap.data.grid import grid_to_string, mask_to_grid
from autobackswap.data.images import read_rgb
from autobackswap.data.labelstore import LabelStore
from autobackswap.data.layout import load_segmentations, read_dataset
from autobackswap.detect.detector import Detector, DetectorConfig
from autobackswap.label.assist import Assistant, AssistConfig, next_refresh, patch_entropy, uncertainty_order
from autobackswap.label.server import colour_scale, create_app, pfg_image

pytestmark = pytest.mark.usefixtures("torch_single_thread")

G = 16
TINY_DETECTOR = {"width": 8, "epochs": 4}


def fast_assist(k: int = 4) -> AssistConfig:
    return AssistConfig(min_labels=k, image_size=32, detector_params=TINY_DETECTOR)


@pytest.fixture
def client(tiny_synthetic: Path, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(tiny_synthetic, tmp_path / "labels.sqlite", grid=G, budget=10, assist_config=fast_assist())
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def gt_masks(tiny_synthetic: Path) -> list[str]:
    dataset = read_dataset(tiny_synthetic)
    segs = load_segmentations(dataset, dataset.split("train"), 32)
    return [grid_to_string(mask_to_grid(s, G, 0.25)) for s in segs]


def stored(c: TestClient) -> dict[str, str]:
    return {e.img_filename: e.mask for e in c.app.state.labeller.store.entries()}  # type: ignore[attr-defined]


def one(*cells: tuple[int, int]) -> str:
    grid = np.zeros((G, G), bool)
    for r, c in cells:
        grid[r, c] = True
    return grid_to_string(grid)


# ----------------------------------------------------------------------------- reading
def test_info_and_image_list(client: TestClient, tiny_synthetic: Path) -> None:
    info = client.get("/api/info").json()
    assert info["grid"] == G and info["budget"] == 10 and info["n_train"] == 40 and info["n_labelled"] == 0
    assert info["target"] == 10  # the progress counter counts to the budget ...
    assert info["assist"]["version"] == 0 and info["assist"]["next_refresh_at"] == 4
    items = client.get("/api/images").json()["items"]
    train = read_dataset(tiny_synthetic).split("train")
    assert [i["img_filename"] for i in items] == [r.img_filename for r in train]
    assert client.get("/api/images?labelled=true").json()["items"] == []


def test_progress_target_is_capped_by_the_train_split(tiny_synthetic: Path, tmp_path: Path) -> None:
    """... or to the number of training images when the budget is larger (40 here, not 200)."""
    app = create_app(tiny_synthetic, tmp_path / "labels.sqlite", grid=G, budget=200, assist=False)
    with TestClient(app) as c:
        info = c.get("/api/info").json()
    assert info["budget"] == 200 and info["target"] == 40 and info["assist"] is None


def test_image_is_served_by_index_as_png(client: TestClient, tiny_synthetic: Path) -> None:
    r = client.get("/api/images/3.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    served = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    record = read_dataset(tiny_synthetic).split("train")[3]
    np.testing.assert_array_equal(served, read_rgb(record.path))
    thumb = Image.open(io.BytesIO(client.get("/api/images/3/thumb.png?size=64").content))
    assert thumb.size == (64, 64)
    assert client.get("/api/images/3/thumb.png?size=5000").status_code == 422


def test_index_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<canvas id=\"board\"" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


@pytest.mark.parametrize(
    "url",
    ["/api/images/..%2Fmetadata.csv", "/api/images/%2e%2e%2fmetadata.csv.png", "/api/images/-1.png",
     "/api/images/40.png", "/api/images/1e3.png", "/static/..%2fmetadata.csv", "/static/%2e%2e/%2e%2e/metadata.csv",
     "/static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/api/labels/..%2f..%2fmetadata.csv",
     "/api/preview/0/..%2f..%2fmetadata.csv.png", "/../metadata.csv", "/%2e%2e/metadata.csv"],
)
def test_no_path_traversal(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code in (400, 403, 404, 405, 409, 422), (url, r.status_code)
    assert "img_filename" not in r.text and "root:" not in r.text


def test_metadata_row_pointing_outside_the_dataset_is_not_served(tiny_synthetic: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_synthetic, data)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(secret)
    with open(data / "metadata.csv", "a", newline="") as fh:
        header = (data / "metadata.csv").read_text().splitlines()[0].split(",")
        row = {"img_filename": "../secret.png", "y": "0", "split": "0", "place": "0", "img_id": "secret"}
        csv.writer(fh).writerow([row.get(col, "") for col in header])
    app = create_app(data, tmp_path / "labels.sqlite", assist=False)
    with TestClient(app) as c:
        index = next(i["index"] for i in c.get("/api/images").json()["items"] if i["id"] == "secret")
        r = c.get(f"/api/images/{index}.png")
        assert r.status_code == 403 and "outside the dataset folder" in r.json()["detail"]


# ----------------------------------------------------------------------------- writing
def test_put_get_delete_label(client: TestClient) -> None:
    mask = one((3, 4), (3, 5))
    r = client.put("/api/labels/2", json={"mask": mask})
    assert r.status_code == 200 and r.json()["revision"] == 1 and r.json()["n_labelled"] == 1
    got = client.get("/api/labels/2").json()
    assert got["mask"] == mask and got["suggestion"] is None and got["source"] == "user"
    assert client.put("/api/labels/2", json={"mask": one((0, 0))}).json()["revision"] == 2
    assert [i["index"] for i in client.get("/api/images?labelled=true").json()["items"]] == [2]
    assert client.delete("/api/labels/2").json() == {"index": 2, "deleted": True, "n_labelled": 0}
    assert client.get("/api/labels/2").json()["mask"] is None


def test_labels_survive_a_restart(tiny_synthetic: Path, tmp_path: Path) -> None:
    db = tmp_path / "labels.sqlite"
    with TestClient(create_app(tiny_synthetic, db, assist=False)) as c:
        c.put("/api/labels/5", json={"mask": one((7, 7))})
    with TestClient(create_app(tiny_synthetic, db, assist=False)) as c:
        assert c.get("/api/labels/5").json()["mask"] == one((7, 7))
        assert c.get("/api/info").json()["n_labelled"] == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [({"json": {"mask": "0" * 255}}, 422, "must have 256 characters (16x16 grid), got 255"),
     ({"json": {"mask": "0" * 300}}, 422, "got 300"),
     ({"json": {"mask": "x" * 256}}, 422, "only the characters 0 and 1, found 'x'"),
     ({"json": {"mask": 1}}, 422, "string"),
     ({"json": {"mask": ["1"] * 256}}, 422, "string"),
     ({"json": {}}, 422, "mask"),
     ({"json": {"mask": "0" * 256, "extra": 1}}, 422, "extra"),
     ({"content": b"not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
     ({"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 422, ""),
     ({"content": b"x" * 70_000, "headers": {"content-type": "application/json"}}, 413, "too large")],
)
def test_malformed_payload_is_refused_and_changes_nothing(client: TestClient, kwargs: dict, status: int, message: str) -> None:
    client.put("/api/labels/1", json={"mask": one((1, 1))})
    before = stored(client)
    r = client.put("/api/labels/1", **kwargs)
    assert r.status_code == status
    assert message in r.text
    assert stored(client) == before


def test_unknown_image_is_404(client: TestClient) -> None:
    for url in ("/api/labels/40", "/api/labels/-1", "/api/labels/99999999999"):
        r = client.put(url, json={"mask": one((1, 1))})
        assert r.status_code == 404 and "no training image with index" in r.json()["detail"]
    assert client.put("/api/labels/abc", json={"mask": one((1, 1))}).status_code == 422
    assert stored(client) == {}


def test_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 8192

    r = client.put("/api/labels/1", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and stored(client) == {}


def test_host_and_origin_checks(client: TestClient) -> None:
    assert client.get("/api/info", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    r = client.put("/api/labels/1", json={"mask": one((1, 1))}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    assert client.post("/api/import", content=b"info,mask\n", headers={"origin": "null"}).status_code == 403
    assert stored(client) == {}
    r = client.put("/api/labels/1", json={"mask": one((1, 1))}, headers={"origin": "http://testserver"})
    assert r.status_code == 200


def test_import_and_export(client: TestClient, tiny_synthetic: Path) -> None:
    train = read_dataset(tiny_synthetic).split("train")
    body = f"info,mask\n{train[0].img_id},{one((0, 1))}\n{train[9].img_id},{one((9, 9))}\n"
    r = client.post("/api/import", content=body, headers={"content-type": "text/csv"})
    assert r.status_code == 200 and r.json() == {"imported": 2, "n_labelled": 2}
    export = client.get("/api/export")
    assert export.headers["content-type"].startswith("text/csv")
    assert export.text == body
    before = stored(client)
    bad = f"info,mask\n{train[3].img_id},{one((3, 3))}\n{train[4].img_id},01\n"
    r = client.post("/api/import", content=bad, headers={"content-type": "text/csv"})
    assert r.status_code == 422 and r.json()["detail"].startswith("masks.csv, row 3: mask has 2 characters")
    assert client.post("/api/import", content=b"").status_code == 422
    assert client.post("/api/import", content=b"\xff\xfe\x00").status_code == 422
    assert stored(client) == before


# ----------------------------------------------------------------------------- assistance
def test_assist_trains_after_k_labels_prefills_and_orders(client: TestClient, gt_masks: list[str]) -> None:
    assistant = client.app.state.labeller.assistant  # type: ignore[attr-defined]
    assert client.get("/api/next").json()["reason"] == "random"
    assert client.get("/api/preview").json()["ready"] is False
    assert client.get("/api/preview/0/image.png").status_code == 409
    for i in range(3):
        client.put(f"/api/labels/{i}", json={"mask": gt_masks[i]})
    assert assistant.wait_idle(1) and assistant.state is None  # below K: nothing trains
    r = client.put("/api/labels/3", json={"mask": gt_masks[3]})  # the K-th label
    assert r.json()["assist"]["training"] is True  # answered while the fit runs: the request did not wait for it
    assert assistant.wait_idle(60)
    status = client.get("/api/info").json()["assist"]
    assert status["version"] == 1 and status["n_labels"] == 4 and status["error"] is None
    assert status["next_refresh_at"] == next_refresh(4, assistant.config) == 9

    label = client.get("/api/labels/10").json()
    assert label["mask"] is None and label["suggestion_version"] == 1
    expected = grid_to_string(assistant.state.p_fg[10] >= 0.5)
    assert label["suggestion"] == expected
    assert client.get("/api/labels/0").json()["suggestion"] is None  # labelled: no suggestion

    nxt = client.get("/api/next").json()
    entropy = assistant.state.entropy
    unlabelled = [i for i in range(40) if i >= 4]
    assert nxt["reason"] == "uncertain" and nxt["remaining"] == 36
    assert entropy[nxt["index"]] == max(entropy[i] for i in unlabelled)
    assert client.get(f"/api/next?exclude={nxt['index']}").json()["index"] != nxt["index"]

    preview = client.get("/api/preview").json()
    assert preview["ready"] and len(preview["items"]) == 6
    assert {client.app.state.labeller.records[i["index"]].y for i in preview["items"]} == {0, 1}  # type: ignore[attr-defined]
    index = preview["items"][0]["index"]
    for kind in preview["kinds"]:
        r = client.get(f"/api/preview/{index}/{kind}.png")
        assert r.status_code == 200, kind
        image = Image.open(io.BytesIO(r.content))
        assert image.size == (32, 32), kind
        assert image.mode == {"cutout": "RGBA", "mask": "L"}.get(kind, "RGB"), kind
    assert client.get(f"/api/preview/{index}/secret.png").status_code == 404


def test_failed_fit_is_reported_not_raised(client: TestClient) -> None:
    assistant = client.app.state.labeller.assistant  # type: ignore[attr-defined]
    for i in range(4):
        client.put(f"/api/labels/{i}", json={"mask": "1" * 256})  # all foreground: nothing to learn
    assert assistant.wait_idle(30)
    status = client.get("/api/info").json()["assist"]
    assert status["version"] == 0 and "every labelled patch is foreground" in status["error"]
    assert client.get("/api/info").status_code == 200


def test_train_now_needs_labels(client: TestClient) -> None:
    r = client.post("/api/assist/train")
    assert r.status_code == 409 and "at least 2" in r.json()["detail"]


def test_requests_during_a_fit_are_coalesced(tiny_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LabelStore(tmp_path / "labels.sqlite", grid=G)
    assistant = Assistant(read_dataset(tiny_synthetic).split("train"), store, G, fast_assist(),
                          images=np.zeros((40, 32, 32, 3), np.uint8))
    calls: list[float] = []
    release = threading.Event()

    def slow_fit() -> None:
        calls.append(time.perf_counter())
        release.wait(10)

    monkeypatch.setattr(assistant, "fit_now", slow_fit)
    assistant.request()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.perf_counter()
    for _ in range(10):
        assistant.request()  # while the first fit runs
    assert time.perf_counter() - start < 2.0  # never blocks (the fit holds no lock)
    release.set()
    assert assistant.wait_idle(10)
    assert len(calls) == 2  # the first fit and one refit for the ten requests
    assistant.stop()


def test_probability_maps_use_the_legend_colours() -> None:
    """p(fg) maps are drawn on the colour scale the preview's legend shows (viridis: 0 dark purple, 1 yellow)."""
    scale = colour_scale()
    assert len(scale) == 11 and scale[0] == "#440154" and scale[-1] == "#fde725"
    image = pfg_image(np.array([[0.0, 1.0], [0.5, 0.0]], np.float32), (4, 4))
    assert image.shape == (4, 4, 3) and image.dtype == np.uint8
    hexes = ["#" + "".join(f"{v:02x}" for v in image[r, c]) for r, c in ((0, 0), (0, 3), (3, 0), (1, 1))]
    assert hexes == [scale[0], scale[-1], scale[5], scale[0]]  # nearest upsampling: one colour per patch


def test_assistant_trains_the_main_detector() -> None:
    """No early stopping and the main detector's settings (the small early-stopped one predicted a uniform
    grid after 20 labels)."""
    config = Detector(**AssistConfig().detector_params).config
    assert config == DetectorConfig()
    assert config.patience == 0 and config.epochs == 100 and config.paste == 1.0


def test_refresh_schedule_entropy_and_order() -> None:
    cfg = AssistConfig(min_labels=20, refresh_growth=1.5, refresh_min=5)
    assert [next_refresh(n, cfg) for n in (0, 20, 21, 30, 100)] == [20, 30, 32, 45, 150]
    assert next_refresh(2, AssistConfig(min_labels=4, refresh_min=5)) == 7
    p = np.array([np.full((2, 2), 0.5), np.full((2, 2), 1.0), [[0.5, 0.0], [1.0, 0.0]]])
    np.testing.assert_allclose(patch_entropy(p), [1.0, 0.0, 0.25], atol=1e-4)
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.0])
    tie = np.array([4, 3, 2, 1, 0])
    assert uncertainty_order(scores, [0, 1, 2, 3], tie) == [3, 1, 2, 0]
    assert uncertainty_order(scores, [], tie) == []


# ----------------------------------------------------------------------------- the command
def test_cli_import_export(tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = read_dataset(tiny_synthetic).split("train")
    src = tmp_path / "in.csv"
    src.write_text(f"info,mask\n{train[2].img_id},{one((2, 2))}\n")
    db, out = tmp_path / "l.sqlite", tmp_path / "out.csv"
    assert main(["label", str(tiny_synthetic), "--db", str(db), "--import", str(src), "--export", str(out)]) == 0
    assert out.read_text() == src.read_text()
    assert "imported 1 labels" in capsys.readouterr().out
    assert main(["label", str(tiny_synthetic), "--db", str(tmp_path / "none.sqlite"), "--export", str(out)]) == 2
    assert "label store not found" in capsys.readouterr().err


def test_cli_port_in_use_is_one_clear_error(tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        rc = main(["label", str(tiny_synthetic), "--db", str(tmp_path / "l.sqlite"), "--port", str(port), "--no-assist"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [f"autobackswap label: error: port {port} on 127.0.0.1 is already in use: "
                   "stop the other server or pick another --port"]
