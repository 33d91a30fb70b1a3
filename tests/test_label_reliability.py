"""The labelling app under faults and fuzzing: read-only label stores, which hosts count as local, and an
API fuzz from the app's own OpenAPI schema (schemathesis): no request gets a 500."""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from autobackswap.cli import main
from autobackswap.data.labelstore import LabelStore, LabelStoreError
from autobackswap.data.layout import read_dataset
from autobackswap.label import server
from autobackswap.label.assist import AssistConfig
from autobackswap.label.server import LOCAL_HOSTS, allowed_hosts_for, create_app, host_name, is_loopback

G = 4
MASK = "1" + "0" * (G * G - 1)
LOCAL = "http://localhost"


def labelled_store(path: Path, data: Path) -> Path:
    """A store at ``path`` with one label: ``MASK`` on the first training image of ``data``."""
    store = LabelStore(path, grid=G)
    store.put(read_dataset(data).split("train")[0].img_filename, MASK)
    return path


# ----------------------------------------------------------------------------- read-only stores
def test_read_only_store_refuses_to_start_with_one_line(tiny_synthetic: Path, tmp_path: Path,
                                                       make_readonly: Callable[[Path], Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    db = make_readonly(labelled_store(tmp_path / "labels.sqlite", tiny_synthetic))
    with pytest.raises(LabelStoreError, match="cannot be written"):
        create_app(tiny_synthetic, db, grid=G, assist=False)
    assert main(["label", str(tiny_synthetic), "--db", str(db), "--no-assist"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(db) in err and "cannot be written" in err


def test_read_only_folder_refuses_to_start_with_one_line(tiny_synthetic: Path, tmp_path: Path,
                                                        make_readonly: Callable[[Path], Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    make_readonly(folder)
    db = folder / "labels.sqlite"
    assert main(["label", str(tiny_synthetic), "--db", str(db), "--no-assist"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(db) in err and "Traceback" not in err
    assert not db.exists()


def test_read_only_store_still_exports(tiny_synthetic: Path, tmp_path: Path, make_readonly: Callable[[Path], Path],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    db = make_readonly(labelled_store(tmp_path / "labels.sqlite", tiny_synthetic))
    assert main(["label", str(tiny_synthetic), "--db", str(db), "--export", str(tmp_path / "out.csv")]) == 0
    assert "exported 1 labels" in capsys.readouterr().out
    assert (tmp_path / "out.csv").read_text().splitlines()[1].endswith(MASK)
    assert LabelStore(db, readonly=True).count() == 1


def test_a_store_that_turns_read_only_answers_writes_with_503(tiny_synthetic: Path, tmp_path: Path,
                                                             make_readonly: Callable[[Path], Path]) -> None:
    db = tmp_path / "labels.sqlite"
    app = create_app(tiny_synthetic, db, grid=G, assist=False)
    with TestClient(app, base_url=LOCAL) as client:
        assert client.put("/api/labels/0", json={"mask": MASK}).status_code == 200
        make_readonly(db)
        r = client.put("/api/labels/1", json={"mask": MASK})
        assert r.status_code == 503 and "cannot be written" in r.json()["detail"] and str(db) in r.json()["detail"]
        assert client.delete("/api/labels/0").status_code == 503
        body = f"info,mask\n{client.get('/api/labels/2').json()['id']},{MASK}\n"
        assert client.post("/api/import", content=body, headers={"content-type": "text/csv"}).status_code == 503
        assert client.get("/api/labels/1").json()["mask"] is None  # nothing saved, and reads still work
        assert client.get("/api/labels/0").json()["mask"] == MASK


def test_a_file_that_is_not_sqlite_is_one_error(tmp_path: Path) -> None:
    bad = tmp_path / "labels.sqlite"
    bad.write_text("not a database, just text\n" * 100)
    for readonly in (False, True):
        with pytest.raises(LabelStoreError, match="not an SQLite label store") as exc:
            LabelStore(bad, readonly=readonly)
        assert str(bad) in str(exc.value) and "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- which hosts are local
@pytest.mark.parametrize(("host", "local"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                             ("[::1]", True), ("127.0.0.2", True), ("0.0.0.0", False),
                                             ("::", False), ("192.168.1.5", False), ("example.org", False)])
def test_loopback_hosts(host: str, local: bool) -> None:
    assert is_loopback(host) is local
    assert (allowed_hosts_for(host) is not None) is local


def test_host_header_parsing() -> None:
    assert [host_name(h) for h in ("[::1]:8765", "[::1]", "LocalHost:80", "127.0.0.1", "evil.example:1")] == [
        "::1", "::1", "localhost", "127.0.0.1", "evil.example"]
    assert "testserver" not in LOCAL_HOSTS


def test_testserver_is_not_accepted_in_production(tiny_synthetic: Path, tmp_path: Path) -> None:
    app = create_app(tiny_synthetic, tmp_path / "labels.sqlite", grid=G, assist=False)
    with TestClient(app) as client:  # the test client's default Host header is "testserver"
        assert client.get("/api/info").status_code == 400
    with TestClient(app, base_url="http://[::1]:8765") as client:
        assert client.get("/api/info").status_code == 200


def test_label_host_ipv6_loopback_is_local(tiny_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    served: dict[str, Any] = {}

    def fake_serve(app: FastAPI, host: str, port: int, **_: Any) -> None:
        served.update(app=app, host=host)

    monkeypatch.setattr(server, "serve", fake_serve)
    assert main(["label", str(tiny_synthetic), "--db", str(tmp_path / "l.sqlite"), "--host", "::1", "--no-assist"]) == 0
    assert "warning" not in capsys.readouterr().err  # no "anyone who can reach this address" warning
    with TestClient(served["app"], base_url="http://[::1]:8765") as client:
        assert client.get("/api/info").status_code == 200
    with TestClient(served["app"], base_url="http://evil.example") as client:
        assert client.get("/api/info").status_code == 400  # the DNS-rebinding check is on
    assert main(["label", str(tiny_synthetic), "--db", str(tmp_path / "l.sqlite"), "--host", "0.0.0.0",
                 "--no-assist"]) == 0
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().err


# ----------------------------------------------------------------------------- API fuzz
EXAMPLES = 12  # per operation and mode: 13 operations x 3 modes x 12 = a few hundred requests


def test_api_fuzz_from_the_openapi_schema_never_answers_500(tiny_synthetic: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_synthetic, data)
    # the assistant is on (its ordering and preview code run) but never trains: no background threads
    app = create_app(data, tmp_path / "labels.sqlite", grid=G, assist_config=AssistConfig(min_labels=10**6, image_size=32))
    labelled_store(tmp_path / "labels.sqlite", tiny_synthetic)
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    seen: Counter[int] = Counter()
    failures: list[str] = []
    with TestClient(app, base_url=LOCAL):  # runs the app's lifespan
        for operation in operations:
            has_index = "{index}" in operation.path
            modes = [(GenerationMode.POSITIVE, {}), (GenerationMode.NEGATIVE, {})]
            if has_index:  # most random indices miss the 40 images; also aim at a real one
                modes.append((GenerationMode.POSITIVE, {"index": 1}))
            for mode, path_parameters in modes:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)

                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def call(case: Any) -> None:
                    response = case.call(app=app, base_url=LOCAL)
                    seen[response.status_code] += 1
                    if response.status_code >= 500:
                        failures.append(f"{case.method} {case.formatted_path} query={case.query} "
                                        f"body={str(case.body)[:80]!r}: {response.status_code} {response.text[:200]}")

                try:
                    call()
                except Unsatisfiable:  # no invalid variant of an operation without parameters or body
                    assert mode is GenerationMode.NEGATIVE, operation.label
    assert failures == []
    assert sum(seen.values()) >= 200 and seen[200] > 0 and seen[422] > 0 and seen[404] > 0
    assert all(code < 500 for code in seen)


def test_reading_a_store_creates_no_files_beside_it(tiny_synthetic: Path, tmp_path: Path) -> None:
    db = labelled_store(tmp_path / "labels.sqlite", tiny_synthetic)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert before == ["labels.sqlite"]
    assert LabelStore(db, readonly=True).count() == 1  # e.g. fit-detector --labels DATA/labels.sqlite
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no -wal / -shm left in DATA/


def test_reading_a_store_in_use_sees_its_latest_labels(tiny_synthetic: Path, tmp_path: Path) -> None:
    db = labelled_store(tmp_path / "labels.sqlite", tiny_synthetic)
    holder = sqlite3.connect(db)  # the app's connection: the write-ahead log stays in use
    try:
        holder.execute("SELECT COUNT(*) FROM labels").fetchone()
        second = read_dataset(tiny_synthetic).split("train")[1].img_filename
        LabelStore(db).put(second, MASK)
        assert Path(f"{db}-wal").exists()
        assert set(LabelStore(db, readonly=True).grids()) >= {second}
    finally:
        holder.close()
