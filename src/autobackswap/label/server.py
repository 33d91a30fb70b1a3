"""The labelling web app: a FastAPI application over a dataset folder and a :class:`LabelStore`.

Pages (one static page, hash-routed): ``#/label/<index>`` paints patches, ``#/list`` shows the
labelled images, ``#/preview`` shows what the current detector makes of a few images.

JSON API (``index`` is the position of an image in the train split of ``metadata.csv``)::

    GET    /api/info                       grid, budget, counts, assist status
    GET    /api/images[?labelled=true]     the train images (index, id, y, labelled)
    GET    /api/images/{index}.png         the image, decoded (EXIF applied) and re-encoded as PNG
    GET    /api/images/{index}/thumb.png   a thumbnail with the label tinted
    GET    /api/labels/{index}             label (or null) and the detector's suggestion (or null)
    PUT    /api/labels/{index}             {"mask": "0101..."} (G*G chars, 1 = foreground)
    DELETE /api/labels/{index}             forget the label
    GET    /api/next[?exclude=i]           the image to label next (least sure first)
    POST   /api/assist/train               (re)fit the detector now, in the background
    GET    /api/export                     masks.csv (reference format)
    POST   /api/import                     a masks.csv as the request body (text/csv)
    GET    /api/preview                    preview items and whether a detector exists
    GET    /api/preview/{index}/{kind}.png image | pfg | mask | cutout | background | composite

Safety: files are reached only through the records of ``metadata.csv`` (an index, never a path from
the request); request bodies are limited (``max_body``, ``max_import`` for imports) and answered 413
beyond; a state-changing request whose ``Origin`` is another site is refused (403), and the ``Host``
header must be one of ``allowed_hosts`` (DNS rebinding; the loopback names, IPv6 ``[::1]`` included,
when the app listens on a loopback address, see :func:`allowed_hosts_for`). Bad payloads get a 4xx with a
message and change nothing. A label store that cannot be written refuses to open (one line at start);
should it stop accepting writes later, a write is answered 503 with the reason, which the page shows.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import seeding
from ..compose.sheets import heat
from ..data.grid import grid_to_mask, grid_to_string
from ..data.images import read_rgb
from ..data.labelstore import LabelError, LabelStore, LabelStoreError, validate_mask
from ..data.layout import ImageDataset, Record, inside
from ..data.layouts import read_layout
from ..errors import AutoBackSwapError, DataError
from ..io import encode_png
from ..options import check_range
from ..separate.inpaint import create_inpainter
from ..separate.masks import create_refiner
from ..separate.run import SeparationConfig, masks_from_grid, separate_one
from ..tensors import paste_rgba
from .assist import Assistant, AssistConfig

log = logging.getLogger(__name__)

STATIC_DIR = Path(str(resources.files("autobackswap.label") / "static"))
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # Host header names of this machine
MAX_DISPLAY_SIDE = 1024  # larger photos are shown downscaled (the grid is proportional, so labels are unchanged)
PREVIEW_KINDS = ("image", "pfg", "mask", "cutout", "background", "composite")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


# ----------------------------------------------------------------------------- ASGI middleware
class BodyLimitMiddleware:
    """Answer 413 to a request body above ``max_body`` bytes (``limits`` overrides it per path).

    Checks ``Content-Length`` first, then reads the body (counting chunked streams) before the app runs.
    """

    def __init__(self, app: ASGIApp, max_body: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.limits = limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.max_body)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_json(send, 400, {"detail": "invalid Content-Length header"})
                return
            if declared > limit:
                await _send_json(send, 413, {"detail": f"request body too large: {declared} bytes, limit {limit}"})
                return
        # Read the whole (bounded) body first, so an oversized stream is refused before the app sees it.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            received += len(body)
            if received > limit:
                await _send_json(send, 413, {"detail": f"request body too large: over {limit} bytes"})
                return
            chunks.append(body)
            more = bool(message.get("more_body", False))
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive() -> Message:
            if replay:
                return replay.pop()
            return await receive()

        await self.app(scope, replay_receive, send)


class SameOriginMiddleware:
    """Refuse state-changing requests sent by another site's page (CSRF): its ``Origin`` must be ours."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin")
            host = headers.get(b"host", b"").decode("latin-1")
            if origin is not None and origin != b"null":
                netloc = urlsplit(origin.decode("latin-1")).netloc
                if netloc != host:
                    await _send_json(send, 403, {"detail": f"cross-origin request from {origin.decode('latin-1')} refused"})
                    return
            elif origin == b"null":
                await _send_json(send, 403, {"detail": "request from an opaque origin refused"})
                return
        await self.app(scope, receive, send)


def host_name(header: str) -> str:
    """The host part of a ``Host`` header, lower case: ``[::1]:8765`` -> ``::1``, ``localhost:80`` -> ``localhost``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.index("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``): the app is reachable from
    this machine only."""
    name = host_name(host) if host.startswith("[") else host.strip().lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(bind_host: str) -> tuple[str, ...] | None:
    """The ``Host`` header names to accept when listening on ``bind_host``: this machine's names for a
    loopback address, None (any) for another address, where a DNS-rebinding check cannot know the name."""
    if not is_loopback(bind_host):
        return None
    name = host_name(bind_host) if bind_host.startswith("[") else bind_host.strip().lower()
    return tuple(dict.fromkeys((*LOCAL_HOSTS, name)))


class HostCheckMiddleware:
    """Answer 400 to a request whose ``Host`` header names none of ``allowed_hosts`` (DNS rebinding).
    Unlike Starlette's TrustedHostMiddleware it reads bracketed IPv6 hosts (``[::1]:8765``)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            host = host_name(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.allowed:
                await _send_json(send, 400, {"detail": f"invalid Host header {host!r}: this app answers to "
                                                       f"{', '.join(sorted(self.allowed))}"})
                return
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- pure helpers
def thumbnail(image: np.ndarray, grid: np.ndarray | None, size: int) -> np.ndarray:
    """HWC uint8 thumbnail (longer side ``size``) with foreground patches tinted and background dimmed."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    small = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    if grid is None:
        return small
    fg = grid_to_mask(grid, (th, tw))[..., None]
    tint = np.array([255, 200, 0], np.float32)
    out = np.where(fg, 0.6 * small + 0.4 * tint, 0.55 * small)
    return np.clip(out, 0, 255).astype(np.uint8)


def pfg_image(p_fg: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """p(foreground) grid as a nearest-upsampled HWC uint8 RGB image on the colour scale of :func:`colour_scale`."""
    return heat(grid_to_mask(p_fg, size))


def colour_scale(steps: int = 11) -> list[str]:
    """The colours of p(fg) = 0, 1/(steps-1), ..., 1 on the probability maps, as ``#rrggbb`` (the page's legend)."""
    rgb = heat(np.linspace(0.0, 1.0, steps)[None])[0]
    return ["#" + "".join(f"{int(v):02x}" for v in c) for c in rgb]


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mask: str


# ----------------------------------------------------------------------------- the app's state
class LabelApp:
    """Everything the routes share: the train split, the store, the assistant and small caches.

    The per-request work of the routes lives here; the route functions only parse and answer.
    """

    def __init__(self, dataset: ImageDataset, store: LabelStore, grid: int, budget: int,
                 assistant: Assistant | None, preview_count: int, seed: int) -> None:
        self.dataset = dataset
        self.records = dataset.split("train")
        self.position = {r.img_filename: i for i, r in enumerate(self.records)}
        self.store = store
        self.grid = grid
        self.budget = budget
        self.assistant = assistant
        self.seed = seed
        self.preview_indices = self._preview_sample(preview_count)
        self._png_cache: dict[Any, OrderedDict[tuple[Any, ...], bytes]] = {}
        self._preview_cache: OrderedDict[Any, dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        """The app's lifespan: start the detector for a store that already holds labels, stop it at the end."""
        if self.assistant is not None:
            self.assistant.notify()  # a store that already holds K labels gets its detector at start-up
        yield
        if self.assistant is not None:
            self.assistant.stop()

    # ------------------------------------------------------------------ images
    def record(self, index: int) -> Record:
        if not 0 <= index < len(self.records):
            raise HTTPException(404, f"no training image with index {index} (the train split has {len(self.records)} images, 0-{len(self.records) - 1})")
        record = self.records[index]
        if not inside(record.path, self.dataset.root):
            raise HTTPException(403, f"image {record.img_filename!r} lies outside the dataset folder; not served")
        return record

    def image(self, index: int) -> np.ndarray:
        record = self.record(index)
        try:
            image = read_rgb(record.path, record.row)
        except DataError as exc:  # a corrupt, truncated or oversized file in the dataset
            raise HTTPException(422, f"cannot show this image: {exc}") from None
        h, w = image.shape[:2]
        if max(h, w) > MAX_DISPLAY_SIDE:
            scale = MAX_DISPLAY_SIDE / max(h, w)
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return image

    def cached_png(self, key: tuple[Any, ...], make: Callable[[], np.ndarray], limit: int = 256) -> bytes:
        """PNG bytes of ``make()``, kept in a small LRU cache per kind (``key[0]``) of at most ``limit`` entries."""
        with self._lock:
            cache = self._png_cache.setdefault(key[0], OrderedDict())
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        data = encode_png(make())
        with self._lock:
            cache[key] = data
            while len(cache) > limit:
                cache.popitem(last=False)
        return data

    def image_png(self, index: int) -> bytes:
        return self.cached_png(("image", index), lambda: self.image(index), limit=32)

    def thumb_png(self, index: int, size: int) -> bytes:
        """The thumbnail of image ``index`` (longer side ``size``) with its label tinted."""
        if not 16 <= size <= 512:
            raise HTTPException(422, f"thumbnail size must lie in 16-512 px, got {size}")
        record = self.record(index)
        entry = self.store.get(record.img_filename)
        key = ("thumb", index, size, entry.mask if entry else None)
        return self.cached_png(key, lambda: thumbnail(self.image(index), entry.grid if entry else None, size), limit=512)

    def image_list(self, labelled: bool | None) -> dict[str, Any]:
        """The train images with their label state (only the (un)labelled ones when ``labelled`` is set)."""
        entries = {e.img_filename: e for e in self.store.entries()}
        items: list[dict[str, Any]] = []
        for i, r in enumerate(self.records):
            e = entries.get(r.img_filename)
            if labelled is not None and (e is not None) != labelled:
                continue
            items.append({"index": i, "id": r.img_id, "img_filename": r.img_filename, "y": r.y,
                          "labelled": e is not None, "source": e.source if e else None,
                          "revision": e.revision if e else 0, "updated_at": e.updated_at if e else None})
        if labelled:
            items.sort(key=lambda item: item["updated_at"] or 0.0, reverse=True)
        return {"items": items, "n_train": len(self.records)}

    # ------------------------------------------------------------------ labels
    def labelled_indices(self) -> list[int]:
        return sorted(self.position[n] for n in self.store.names() if n in self.position)

    def info(self) -> dict[str, Any]:
        n = len(self.labelled_indices())
        return {
            "dataset": self.dataset.root.name,
            "grid": self.grid,
            "budget": self.budget,
            "target": min(self.budget, len(self.records)),  # what the progress counter counts to
            "n_train": len(self.records),
            "n_labelled": n,
            "db": str(self.store.path),
            "assist": self.assistant.status() if self.assistant else None,
        }

    def label_payload(self, index: int) -> dict[str, Any]:
        """The label of image ``index`` (or null) and, for an unlabelled one, the detector's suggestion."""
        record = self.record(index)
        entry = self.store.get(record.img_filename)
        out: dict[str, Any] = {"index": index, "id": record.img_id, "img_filename": record.img_filename,
                               "y": record.y, "grid": self.grid, "mask": entry.mask if entry else None,
                               "source": entry.source if entry else None, "revision": entry.revision if entry else 0,
                               "suggestion": None, "suggestion_version": None}
        if entry is None and self.assistant is not None:
            suggested = self.assistant.suggestion(index)
            if suggested is not None:
                out["suggestion"], out["suggestion_version"] = grid_to_string(suggested[0]), suggested[1]
        return out

    def put_label(self, index: int, mask_text: str) -> dict[str, Any]:
        """Store a validated mask for image ``index`` and tell the assistant."""
        record = self.record(index)
        mask = validate_mask(mask_text, self.grid)
        revision = self.store.put(record.img_filename, mask)
        n = len(self.labelled_indices())
        if self.assistant is not None:
            self.assistant.notify(n)
        return {"index": index, "mask": mask, "revision": revision, "n_labelled": n,
                "assist": self.assistant.status() if self.assistant else None}

    def delete_label(self, index: int) -> dict[str, Any]:
        record = self.record(index)
        deleted = self.store.delete(record.img_filename)
        return {"index": index, "deleted": deleted, "n_labelled": len(self.labelled_indices())}

    def next_image(self, exclude: int | None) -> dict[str, Any]:
        """The image to label next: the assistant's order (least sure first), else the first unlabelled one."""
        skip = [exclude] if exclude is not None else []
        if self.assistant is not None:
            order, reason = self.assistant.order(skip)
        else:
            labelled = set(self.labelled_indices()) | set(skip)
            order, reason = [i for i in range(len(self.records)) if i not in labelled], "sequential"
        return {"index": order[0] if order else None, "reason": reason, "remaining": len(order)}

    # ------------------------------------------------------------------ import / export
    def export_csv(self) -> str:
        return self.store.to_csv_text(self.dataset)

    def import_csv(self, body: bytes) -> dict[str, Any]:
        """Import the masks.csv sent as ``body`` (checked as a whole; a bad one changes nothing)."""
        if not body.strip():
            raise HTTPException(422, "empty upload: send a masks.csv (columns info,mask) as the request body")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(422, "masks.csv must be UTF-8 text") from None
        fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=".csv")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            try:
                n = self.store.import_csv(tmp, self.dataset)
            except DataError as exc:  # name the upload, not our temp file
                raise HTTPException(422, f"masks.csv{', row ' + str(exc.row) if exc.row else ''}: {exc.message}") from None
        finally:
            os.unlink(tmp)
        if self.assistant is not None:
            self.assistant.notify()
        return {"imported": n, "n_labelled": len(self.labelled_indices())}

    # ------------------------------------------------------------------ assistant and preview
    def train_now(self) -> dict[str, Any]:
        """Ask the assistant to (re)fit the detector now."""
        if self.assistant is None:
            raise HTTPException(409, "model assistance is switched off (--no-assist)")
        n = len(self.labelled_indices())
        if n < 2:
            raise HTTPException(409, f"label at least 2 training images first (have {n})")
        self.assistant.request()
        return self.assistant.status()

    def _preview_sample(self, count: int) -> list[int]:
        """A seeded sample of train images, alternating between classes."""
        rng = seeding.rng(self.seed, "label_app", 1)
        by_class: dict[int, list[int]] = {}
        for i in rng.permutation(len(self.records)).tolist():
            by_class.setdefault(self.records[i].y, []).append(i)
        out: list[int] = []
        queues = [by_class[c] for c in sorted(by_class)]
        while len(out) < min(count, len(self.records)):
            for q in queues:
                if q and len(out) < count:
                    out.append(q.pop(0))
        return out

    def preview_list(self) -> dict[str, Any]:
        """The preview items, whether a detector exists, and why not when it does not."""
        assistant = self.assistant
        ready = assistant is not None and assistant.state is not None
        if assistant is None:
            message = "model assistance is switched off (--no-assist): no detector to preview"
        elif not ready:
            message = (f"no detector yet: it is trained in the background once {assistant.config.min_labels} "
                       f"images are labelled ({len(self.labelled_indices())} so far)")
        else:
            message = ""
        items = [{"index": i, "id": self.records[i].img_id, "y": self.records[i].y} for i in self.preview_indices]
        return {"ready": ready, "message": message, "kinds": list(PREVIEW_KINDS), "colour_scale": colour_scale(),
                "version": assistant.state.version if ready and assistant and assistant.state else 0, "items": items}

    def preview_png(self, index: int, kind: str) -> bytes:
        """One preview image (``kind`` of :data:`PREVIEW_KINDS`) of train image ``index``, as PNG."""
        if kind not in PREVIEW_KINDS:
            raise HTTPException(404, f"unknown preview kind {kind!r}; valid: {', '.join(PREVIEW_KINDS)}")
        self.record(index)
        return encode_png(self.preview(index)[kind])

    def _preview_donor(self, index: int) -> int:
        """The image whose background the composite preview of ``index`` uses: another class, preview sample first."""
        y = self.records[index].y
        donors = [i for i in self.preview_indices if self.records[i].y != y]
        if not donors:
            donors = [i for i in range(len(self.records)) if self.records[i].y != y][:1] or [index]
        return donors[0]

    def preview(self, index: int) -> dict[str, np.ndarray]:
        """image / pfg / mask / cutout / background / composite for a train image (current detector)."""
        assistant = self.assistant
        state = assistant.state if assistant else None
        if assistant is None or state is None:
            raise HTTPException(409, "no detector yet: it is trained once enough images are labelled")
        key = (state.version, index)
        with self._lock:
            if key in self._preview_cache:
                return self._preview_cache[key]
        images = assistant.images()
        cfg = SeparationConfig(seed=self.seed)
        refine, inpaint = create_refiner(cfg.refine), create_inpainter(cfg.inpainter)

        def separated(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            alpha, hole = masks_from_grid(images[i], state.p_fg[i], cfg, refine)
            fg, bg, _ = separate_one(images[i], alpha, hole, cfg, inpaint, seeding.rng(self.seed, "separation", i))
            return alpha, fg, bg

        alpha, fg, bg = separated(index)
        _, _, donor_bg = separated(self._preview_donor(index))
        out = {
            "image": images[index],
            "pfg": pfg_image(state.p_fg[index], images.shape[1:3]),
            "mask": np.round(alpha * 255).astype(np.uint8),
            "cutout": fg,
            "background": bg,
            "composite": paste_rgba(fg, donor_bg),
        }
        with self._lock:
            self._preview_cache[key] = out
            while len(self._preview_cache) > 64:
                self._preview_cache.popitem(last=False)
        return out


# ----------------------------------------------------------------------------- the routes, by concern
NO_CACHE = {"Cache-Control": "no-cache"}


async def _unprocessable(_: Request, exc: Exception) -> JSONResponse:
    """A :class:`LabelError` or :class:`DataError` that escaped a route: 422 with its message."""
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    """The label store failed (read-only, locked, damaged): 503 with the reason; nothing was saved."""
    return JSONResponse({"detail": str(exc)}, status_code=503)


def add_page_routes(app: FastAPI, state: LabelApp) -> None:
    """The page (``/``) and the app's status (``/api/info``); create_app mounts ``/static`` after all routes."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=NO_CACHE)

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return state.info()


def add_image_routes(app: FastAPI, state: LabelApp) -> None:
    """The train images: the list, each image as PNG and a thumbnail with its label tinted."""

    @app.get("/api/images")
    def images(labelled: bool | None = None) -> dict[str, Any]:
        return state.image_list(labelled)

    @app.get("/api/images/{index}.png")
    def image_png(index: int) -> Response:
        return Response(state.image_png(index), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/images/{index}/thumb.png")
    def thumb_png(index: int, size: int = 112) -> Response:
        return Response(state.thumb_png(index, size), media_type="image/png", headers=NO_CACHE)


def add_label_routes(app: FastAPI, state: LabelApp) -> None:
    """Reading, writing and forgetting labels, and the image to label next."""

    @app.get("/api/labels/{index}")
    def get_label(index: int) -> dict[str, Any]:
        return state.label_payload(index)

    @app.put("/api/labels/{index}")
    def put_label(index: int, body: LabelIn) -> dict[str, Any]:
        return state.put_label(index, body.mask)

    @app.delete("/api/labels/{index}")
    def delete_label(index: int) -> dict[str, Any]:
        return state.delete_label(index)

    @app.get("/api/next")
    def next_image(exclude: int | None = None) -> dict[str, Any]:
        return state.next_image(exclude)


def add_exchange_routes(app: FastAPI, state: LabelApp) -> None:
    """masks.csv out (export) and in (import)."""

    @app.get("/api/export")
    def export() -> Response:
        return Response(state.export_csv(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="masks.csv"', **NO_CACHE})

    @app.post("/api/import", openapi_extra={"requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string", "description": "a masks.csv: columns info,mask"}}}}})
    async def import_csv(request: Request) -> dict[str, Any]:
        return state.import_csv(await request.body())


def add_assist_routes(app: FastAPI, state: LabelApp) -> None:
    """The detector: train it now, and preview what it makes of a few images."""

    @app.post("/api/assist/train", status_code=202)
    def train_now() -> dict[str, Any]:
        return state.train_now()

    @app.get("/api/preview")
    def preview_list() -> dict[str, Any]:
        return state.preview_list()

    @app.get("/api/preview/{index}/{kind}.png")
    def preview_png(index: int, kind: str) -> Response:
        return Response(state.preview_png(index, kind), media_type="image/png", headers=NO_CACHE)


# ----------------------------------------------------------------------------- the factory
def open_label_state(data_dir: str | Path, db_path: str | Path | None, grid: int, budget: int,
                     assist_config: AssistConfig | None, preview_count: int, seed: int,
                     layout: str = "auto") -> LabelApp:
    """The dataset at ``data_dir`` (read in ``layout``), its label store (default DATA/labels.sqlite) and the
    assistant (none without ``assist_config``), as the routes share them."""
    check_range("grid (patches per side)", grid, 1, 512, integer=True)
    check_range("budget (the label budget)", budget, 1, 100_000_000, integer=True)
    check_range("preview_count", preview_count, 0, 1000, integer=True)
    dataset = read_layout(data_dir, layout)
    store = LabelStore(Path(db_path) if db_path is not None else dataset.root / "labels.sqlite", grid=grid)
    assistant = Assistant(dataset.split("train"), store, grid, assist_config) if assist_config is not None else None
    return LabelApp(dataset, store, grid, budget, assistant, preview_count, seed)


def create_app(
    data_dir: str | Path,
    db_path: str | Path | None = None,
    grid: int = 16,
    budget: int = 200,
    assist_after: int = 20,
    *,
    assist: bool = True,
    assist_config: AssistConfig | None = None,
    image_size: int = 64,
    max_body: int = 64 * 1024,
    max_import: int = 16 * 1024 * 1024,
    allowed_hosts: Sequence[str] | None = LOCAL_HOSTS,
    preview_count: int = 6,
    seed: int = 0,
    device: str = "auto",
    layout: str = "auto",
) -> FastAPI:
    """The labelling app for the dataset at ``data_dir`` (labels in ``db_path``, default DATA/labels.sqlite),
    read in ``layout`` (see :mod:`autobackswap.data.layouts`).

    ``device`` is where the assistant's detector trains and predicts (``auto``: a GPU when there is one).

    ``allowed_hosts=None`` accepts any ``Host`` header (when serving on a non-local ``--host``).
    """
    config = None
    if assist:
        config = assist_config or AssistConfig(min_labels=assist_after, image_size=image_size, seed=seed, device=device)
    state = open_label_state(data_dir, db_path, grid, budget, config, preview_count, seed, layout)
    app = FastAPI(title="autobackswap label", lifespan=state.lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.labeller = state
    app.add_exception_handler(LabelError, _unprocessable)
    app.add_exception_handler(DataError, _unprocessable)
    app.add_exception_handler(LabelStoreError, _unavailable)
    add_page_routes(app, state)
    add_image_routes(app, state)
    add_label_routes(app, state)
    add_exchange_routes(app, state)
    add_assist_routes(app, state)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SameOriginMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_body=max_body, limits={"/api/import": max_import})
    if allowed_hosts is not None:
        app.add_middleware(HostCheckMiddleware, allowed_hosts=list(allowed_hosts))
    return app


# ----------------------------------------------------------------------------- running it
def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port); a clear error when it is taken."""
    check_range("port", port, 0, 65535, integer=True)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart right after a stop (TIME_WAIT)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AutoBackSwapError(f"port {port} on {host} is already in use: stop the other server or pick another --port") from None
        raise AutoBackSwapError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class LabelServer:
    """uvicorn serving ``app`` on an already bound socket; :meth:`run` blocks, :meth:`start` uses a thread."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.sock = bind_socket(host, port)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level=log_level,
                                                    lifespan="on", access_log=False))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def start(self, timeout: float = 20.0) -> LabelServer:
        self._thread = threading.Thread(target=self.run, name="label-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise AutoBackSwapError("the labelling server did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8765, log_level: str = "warning",
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until Ctrl+C. ``on_ready(url)`` runs once the port is bound (the CLI prints the URL there)."""
    server = LabelServer(app, host, port, log_level)
    if on_ready is not None:
        on_ready(server.url)
    server.run()
