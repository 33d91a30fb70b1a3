// autobackswap label: paint patch labels on a G x G grid. Plain JS, no build step.
// Every change is PUT to the server at once (no save button); the server's SQLite store is the truth.
"use strict";

const $ = (sel) => document.querySelector(sel);

const S = {
  info: null,          // /api/info
  grid: 16,
  index: null,         // current train image index
  rec: null,           // /api/labels/{index}
  mask: null,          // Uint8Array(G*G), 1 = foreground (what is shown)
  saved: null,         // the stored mask string, or null when the image is unlabelled
  suggested: false,    // the shown grid is the detector's suggestion, not yet saved
  img: null,           // HTMLImageElement of the current image
  zoom: "fit",         // "fit" or a number (display px per image px)
  brush: 1,            // what the left button paints
  showGrid: true,
  opacity: 0.4,        // how strongly the label is drawn over the image (0-1)
  clean: false,        // show the image alone, without the label
  undo: new Map(),     // index -> [mask string | null, ...]
  redo: new Map(),
  stroke: null,        // {value, before, last:[r,c], changed}
  hover: null,         // [r, c]
  chain: Promise.resolve(),
  pending: 0,
  loadToken: 0,
};

const ZOOMS = [0.25, 0.33, 0.5, 0.67, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32];

// ----------------------------------------------------------------------------- helpers
async function api(method, url, body, raw) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    if (raw) { opts.body = body; opts.headers["Content-Type"] = "text/csv"; }
    else { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  }
  const r = await fetch(url, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (!r.ok) {
    let detail = data && data.detail !== undefined ? data.detail : text;
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    throw new Error(`${r.status}: ${detail}`);
  }
  return data;
}

let toastTimer = null;
function toast(message, isError) {
  const t = $("#toast");
  t.textContent = message;
  t.className = "show" + (isError ? " error" : "");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = ""; }, isError ? 5000 : 2200);
}

function rint(x) {  // numpy's round half to even, so cell borders match mask_to_grid exactly
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
function borders(n, g) { const b = []; for (let i = 0; i <= g; i++) b.push(rint((i * n) / g)); return b; }

const maskString = () => Array.from(S.mask, (v) => (v ? "1" : "0")).join("");
const parseMask = (s) => Uint8Array.from(s, (ch) => (ch === "1" ? 1 : 0));

// ----------------------------------------------------------------------------- status line
function renderProgress(n) {
  if (!S.info) return;
  if (n !== undefined) S.info.n_labelled = n;
  const { n_labelled, budget, n_train } = S.info;
  const target = S.info.target ?? Math.min(budget, n_train);  // a small dataset is done when every image is labelled
  $("#progress-text").textContent = `${n_labelled} / ${target}${n_labelled >= target ? " ✓" : ""}`;
  const fill = $("#progress-fill");
  fill.style.width = `${Math.min(100, (100 * n_labelled) / Math.max(1, target))}%`;
  fill.classList.toggle("done", n_labelled >= target);
}

function renderMode() {  // the keys panel and the buttons say what "label next" does in this mode
  const assisted = !!(S.info && S.info.assist);
  $("#key-next").textContent = assisted ? "label next (the detector's least sure first; random before it exists)"
    : "label next (the next unlabelled image)";
  $("#btn-label-next").title = assisted ? "jump to the unlabelled image the detector is least sure of (N)"
    : "jump to the next unlabelled image (N)";
  $("#btn-train").hidden = !assisted;
}

function renderAssist(a) {
  const el = $("#assist-status");
  el.className = "assist";
  if (!a) { el.textContent = "model assistance off"; return; }
  if (a.error) { el.classList.add("error"); el.textContent = `detector: ${a.error}`; el.title = a.error; return; }
  if (a.training) {
    el.classList.add("training");
    el.textContent = a.version ? `refitting detector (v${a.version} in use)…` : "training the first detector…";
    return;
  }
  if (!a.version) {
    el.textContent = `detector after ${a.min_labels} labels (${a.n_labelled} so far)`;
    return;
  }
  el.classList.add("ready");
  const acc = a.holdout_balanced_accuracy == null ? "" : ` · patch acc ${a.holdout_balanced_accuracy.toFixed(2)}`;
  el.textContent = `detector v${a.version} · ${a.n_labels} labels${acc} · refit at ${a.next_refresh_at}`;
}

async function refreshInfo() {
  S.info = await api("GET", "/api/info");
  S.grid = S.info.grid;
  renderProgress();
  renderMode();
  renderAssist(S.info.assist);
  return S.info;
}

// ----------------------------------------------------------------------------- saving
function setSave(state, text) {
  // body[data-save-state] is the queue's state across images: saving / saved / error (tests wait on it)
  if (state !== "idle") document.body.dataset.saveState = state;
  const el = $("#save-state");
  el.className = "save " + state;
  el.textContent = text;
}

function enqueue(fn) {
  S.pending++;
  setSave("saving", "saving…");
  S.chain = S.chain.then(fn).catch((err) => {
    setSave("error", `not saved: ${err.message}`);
    toast(`not saved: ${err.message}`, true);
  }).finally(() => {
    S.pending--;
    if (S.pending === 0 && document.body.dataset.saveState === "saving") setSave("saved", "saved ✓");
  });
  return S.chain;
}

function store(index, mask) {  // mask: string to PUT, or null to DELETE
  return enqueue(async () => {
    const r = mask === null
      ? await api("DELETE", `/api/labels/${index}`)
      : await api("PUT", `/api/labels/${index}`, { mask });
    renderProgress(r.n_labelled);
    if (r.assist) renderAssist(r.assist);
    if (S.pending === 1) setSave("saved", mask === null ? "label removed ✓" : `saved ✓ (revision ${r.revision})`);
  });
}

// A change of the current grid: remember the stored state for undo, then save.
function commit(before) {
  const now = maskString();
  if (now === before) { draw(); return; }
  pushHistory(S.undo, S.index, before);
  S.redo.set(S.index, []);
  S.saved = now;
  S.suggested = false;
  renderState();
  draw();
  store(S.index, now);
}

function pushHistory(map, index, state) {
  if (!map.has(index)) map.set(index, []);
  const stack = map.get(index);
  stack.push(state);
  if (stack.length > 200) stack.shift();
}

function restore(from, to) {
  const stack = from.get(S.index) || [];
  if (!stack.length) { toast(from === S.undo ? "nothing to undo" : "nothing to redo"); return; }
  const state = stack.pop();
  pushHistory(to, S.index, S.saved);
  S.saved = state;
  if (state === null) {
    S.suggested = !!(S.rec && S.rec.suggestion);
    S.mask = S.suggested ? parseMask(S.rec.suggestion) : new Uint8Array(S.grid * S.grid);
  } else {
    S.suggested = false;
    S.mask = parseMask(state);
  }
  renderState();
  draw();
  store(S.index, state);
}

// ----------------------------------------------------------------------------- grid operations
function operate(fn) {
  if (S.index === null) return;
  const before = S.saved;
  S.mask = S.mask.map(fn);
  commit(before);
}
const clearGrid = () => operate(() => 0);
const fillGrid = () => operate(() => 1);
const invertGrid = () => operate((v) => 1 - v);

async function accept() {
  if (S.index === null) return;
  if (S.saved !== maskString()) commit(S.saved);
  await labelNext();
}

// ----------------------------------------------------------------------------- drawing
function zoomValue() {
  if (S.zoom !== "fit" || !S.img) return S.zoom === "fit" ? 1 : S.zoom;
  const stage = $("#stage");
  const w = S.img.naturalWidth, h = S.img.naturalHeight;
  const availW = Math.max(120, stage.clientWidth - 28);
  const top = stage.getBoundingClientRect().top;
  const availH = Math.max(160, window.innerHeight - top - 40);
  let z = Math.min(availW / w, availH / h, 24);
  if (z >= 1) z = Math.floor(z);  // whole multiples keep small images crisp
  return z;
}

function draw() {
  const board = $("#board");
  if (!S.img || !S.mask) return;
  const g = S.grid, w = S.img.naturalWidth, h = S.img.naturalHeight;
  const z = zoomValue();
  const dpr = window.devicePixelRatio || 1;
  const cw = Math.round(w * z), ch = Math.round(h * z);
  board.style.width = `${cw}px`;
  board.style.height = `${ch}px`;
  board.width = Math.round(cw * dpr);
  board.height = Math.round(ch * dpr);
  const ctx = board.getContext("2d");
  const sx = board.width / w, sy = board.height / h;
  ctx.imageSmoothingEnabled = z < 1;
  ctx.drawImage(S.img, 0, 0, board.width, board.height);

  const bx = borders(w, g).map((v) => Math.round(v * sx));
  const by = borders(h, g).map((v) => Math.round(v * sy));
  board.dataset.mask = maskString();
  board.dataset.index = String(S.index);
  board.dataset.view = S.clean ? "clean" : "overlay";
  $("#zoom-text").textContent = S.zoom === "fit" ? `fit ${Math.round(z * 100)}%` : `${Math.round(z * 100)}%`;
  if (S.clean) return;  // the image alone
  const colour = S.suggested ? [0, 210, 255] : [255, 200, 0];
  const anyFg = S.mask.some((v) => v);
  // dim the background patches once there is a foreground, tint the foreground ones (both scale with the slider)
  for (let r = 0; r < g; r++) {
    for (let c = 0; c < g; c++) {
      const fg = S.mask[r * g + c];
      if (fg) ctx.fillStyle = `rgba(${colour.join(",")},${S.opacity})`;
      else if (anyFg) ctx.fillStyle = `rgba(0,0,0,${0.55 * S.opacity})`;
      else continue;
      ctx.fillRect(bx[c], by[r], bx[c + 1] - bx[c], by[r + 1] - by[r]);
    }
  }
  if (S.showGrid && S.opacity > 0) {
    ctx.strokeStyle = "rgba(255,255,255,0.28)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let c = 1; c < g; c++) { ctx.moveTo(bx[c] + 0.5, 0); ctx.lineTo(bx[c] + 0.5, board.height); }
    for (let r = 1; r < g; r++) { ctx.moveTo(0, by[r] + 0.5); ctx.lineTo(board.width, by[r] + 0.5); }
    ctx.stroke();
  }
  // outline of the foreground region: a dark rim under a bright line reads on any background
  ctx.beginPath();
  const at = (r, c) => r >= 0 && c >= 0 && r < g && c < g && S.mask[r * g + c] === 1;
  for (let r = 0; r < g; r++) {
    for (let c = 0; c < g; c++) {
      if (!at(r, c)) continue;
      if (!at(r - 1, c)) { ctx.moveTo(bx[c], by[r]); ctx.lineTo(bx[c + 1], by[r]); }
      if (!at(r + 1, c)) { ctx.moveTo(bx[c], by[r + 1]); ctx.lineTo(bx[c + 1], by[r + 1]); }
      if (!at(r, c - 1)) { ctx.moveTo(bx[c], by[r]); ctx.lineTo(bx[c], by[r + 1]); }
      if (!at(r, c + 1)) { ctx.moveTo(bx[c + 1], by[r]); ctx.lineTo(bx[c + 1], by[r + 1]); }
    }
  }
  ctx.globalAlpha = S.opacity === 0 ? 0 : Math.min(1, 0.3 + 2 * S.opacity);  // full from 35 %, off at 0
  ctx.strokeStyle = "rgba(0,0,0,0.65)";
  ctx.lineWidth = Math.max(4, Math.round(dpr * 4));
  ctx.stroke();
  ctx.strokeStyle = `rgb(${colour.join(",")})`;
  ctx.lineWidth = Math.max(2, Math.round(dpr * 2));
  if (S.suggested) ctx.setLineDash([6 * dpr, 4 * dpr]);
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.globalAlpha = 1;
  if (S.hover) {
    const [r, c] = S.hover;
    ctx.strokeStyle = "rgba(255,255,255,0.95)";
    ctx.lineWidth = Math.max(1, Math.round(dpr * 1.5));
    ctx.strokeRect(bx[c] + 1, by[r] + 1, bx[c + 1] - bx[c] - 2, by[r + 1] - by[r] - 2);
  }
}

function renderState() {
  const el = $("#label-state");
  if (S.saved !== null) {
    el.className = "state labelled";
    el.textContent = S.rec && S.rec.source === "import" && S.saved === S.rec.mask ? "labelled (imported)" : "labelled";
  } else if (S.suggested) {
    el.className = "state suggested";
    el.textContent = `suggested by detector v${S.rec.suggestion_version}: correct it, or press Enter to accept`;
  } else {
    el.className = "state";
    el.textContent = "unlabelled: paint the foreground patches";
  }
}

// ----------------------------------------------------------------------------- pointer painting
function cellAt(ev) {
  const board = $("#board");
  const rect = board.getBoundingClientRect();
  const x = ((ev.clientX - rect.left) / rect.width) * S.img.naturalWidth;
  const y = ((ev.clientY - rect.top) / rect.height) * S.img.naturalHeight;
  const bx = borders(S.img.naturalWidth, S.grid), by = borders(S.img.naturalHeight, S.grid);
  const find = (b, v) => { for (let i = 0; i < S.grid; i++) if (v < b[i + 1]) return i; return S.grid - 1; };
  if (x < 0 || y < 0 || x >= S.img.naturalWidth || y >= S.img.naturalHeight) return null;
  return [find(by, y), find(bx, x)];
}

function paintLine(from, to, value) {  // every cell on the segment, so fast drags leave no gaps
  const [r0, c0] = from, [r1, c1] = to;
  const n = Math.max(Math.abs(r1 - r0), Math.abs(c1 - c0), 1);
  let changed = false;
  for (let k = 0; k <= n; k++) {
    const r = Math.round(r0 + ((r1 - r0) * k) / n), c = Math.round(c0 + ((c1 - c0) * k) / n);
    const i = r * S.grid + c;
    if (S.mask[i] !== value) { S.mask[i] = value; changed = true; }
  }
  return changed;
}

function setupPointer() {
  const board = $("#board");
  board.addEventListener("contextmenu", (e) => e.preventDefault());
  board.addEventListener("pointerdown", (e) => {
    if (!S.img || S.index === null) return;
    e.preventDefault();
    board.focus();
    const cell = cellAt(e);
    if (!cell) return;
    const value = e.button === 2 || e.shiftKey ? 1 - S.brush : S.brush;
    board.setPointerCapture(e.pointerId);
    S.stroke = { value, before: S.saved, last: cell, changed: false };
    if (S.suggested) { S.suggested = false; S.stroke.changed = true; }  // painting adopts the suggestion
    S.stroke.changed = paintLine(cell, cell, value) || S.stroke.changed;
    draw();
  });
  board.addEventListener("pointermove", (e) => {
    if (!S.img) return;
    const cell = cellAt(e);
    S.hover = cell;
    if (S.stroke && cell) {
      if (paintLine(S.stroke.last, cell, S.stroke.value)) S.stroke.changed = true;
      S.stroke.last = cell;
    }
    draw();
  });
  const end = () => {
    if (!S.stroke) return;
    const stroke = S.stroke;
    S.stroke = null;
    if (stroke.changed) commit(stroke.before); else draw();
  };
  board.addEventListener("pointerup", end);
  board.addEventListener("pointercancel", end);
  board.addEventListener("pointerleave", () => { if (!S.stroke) { S.hover = null; draw(); } });
}

// ----------------------------------------------------------------------------- navigation
async function showImage(index) {
  const token = ++S.loadToken;
  const rec = await api("GET", `/api/labels/${index}`);
  const img = new Image();
  img.src = `/api/images/${index}.png`;
  await img.decode();
  if (token !== S.loadToken) return;  // a later navigation won
  S.index = index;
  S.rec = rec;
  S.img = img;
  S.grid = rec.grid;
  S.saved = rec.mask;
  S.suggested = !rec.mask && !!rec.suggestion;
  S.mask = rec.mask ? parseMask(rec.mask) : rec.suggestion ? parseMask(rec.suggestion) : new Uint8Array(S.grid * S.grid);
  S.hover = null;
  $("#stage-empty").hidden = true;
  $("#board").hidden = false;
  const n = S.info ? S.info.n_train : "?";
  $("#image-meta").innerHTML = "";
  const title = document.createElement("div");
  title.textContent = rec.img_filename;
  const sub = document.createElement("small");
  sub.textContent = `image ${index + 1} of ${n} · id ${rec.id} · class ${rec.y} · ${img.naturalWidth}×${img.naturalHeight} px · ${S.grid}×${S.grid} grid`;
  $("#image-meta").append(title, sub);
  renderState();
  if (S.pending === 0) setSave("idle", "");
  draw();
}

function go(index) {
  if (!Number.isInteger(index)) return;
  if (S.info && (index < 0 || index >= S.info.n_train)) return;
  location.hash = `#/label/${index}`;
}

async function labelNext() {
  await S.chain;  // the saves queued so far reach the server first, so it never offers an image just labelled
  const q = S.index === null ? "" : `?exclude=${S.index}`;
  const r = await api("GET", `/api/next${q}`);
  if (r.index === null) {
    toast("every training image is labelled");
    return;
  }
  go(r.index);
}

async function route() {
  const hash = location.hash || "#/label";
  const [, view, arg] = hash.split("/");
  const name = ["label", "list", "preview"].includes(view) ? view : "label";
  for (const v of ["label", "list", "preview"]) {
    $(`#view-${v}`).hidden = v !== name;
    $(`#nav-${v}`).classList.toggle("active", v === name);
  }
  try {
    if (name === "label") {
      if (arg !== undefined && arg !== "") {
        const index = Number.parseInt(arg, 10);
        if (Number.isInteger(index) && index !== S.index) await showImage(index);
        else draw();
      } else {
        await S.chain;
        const r = await api("GET", "/api/next");
        if (r.index === null) {
          if (S.index === null) { $("#board").hidden = true; $("#stage-empty").hidden = false; }
        } else {
          history.replaceState(null, "", `#/label/${r.index}`);
          await showImage(r.index);
        }
      }
    } else if (name === "list") {
      await S.chain;
      await renderList();
    } else {
      await renderPreview();
    }
  } catch (err) {
    toast(err.message, true);
  }
}

// ----------------------------------------------------------------------------- labelled list
async function renderList() {
  const r = await api("GET", "/api/images?labelled=true");
  const box = $("#thumbs");
  box.innerHTML = "";
  $("#list-count").textContent = `(${r.items.length} of ${r.n_train} training images)`;
  $("#list-empty").hidden = r.items.length > 0;
  for (const item of r.items) {
    const a = document.createElement("a");
    a.className = "thumb";
    a.href = `#/label/${item.index}`;
    a.title = item.img_filename;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = item.img_filename;
    img.src = `/api/images/${item.index}/thumb.png?size=128&r=${item.revision}`;
    const cap = document.createElement("div");
    cap.className = "cap";
    cap.textContent = `${item.id} `;
    const small = document.createElement("small");
    small.textContent = `class ${item.y}${item.source === "import" ? " · imported" : ""}`;
    cap.append(small);
    a.append(img, cap);
    box.append(a);
  }
}

async function importFile(file) {
  try {
    const r = await api("POST", "/api/import", await file.text(), true);
    toast(`imported ${r.imported} labels`);
    renderProgress(r.n_labelled);
    await renderList();
  } catch (err) {
    toast(`import failed: ${err.message}`, true);
  }
}

// ----------------------------------------------------------------------------- preview
const PREVIEW_TITLES = { image: "image", pfg: "p(fg) grid", mask: "mask", cutout: "cut-out", background: "inpainted", composite: "composite" };

async function renderPreview() {
  const r = await api("GET", "/api/preview");
  const table = $("#preview-table");
  table.innerHTML = "";
  $("#preview-message").textContent = r.ready
    ? "What the current detector makes of a few training images: its patch probabilities, the refined cut-out mask, the cut-out, the inpainted background and the cut-out pasted on a background of the other class."
    : r.message;
  $("#preview-version").textContent = r.ready ? `(detector v${r.version})` : "";
  $("#pfg-legend").hidden = !r.ready;
  if (!r.ready) return;
  $("#pfg-scale").style.background = `linear-gradient(to right, ${r.colour_scale.join(", ")})`;
  const head = document.createElement("tr");
  head.append(document.createElement("th"));
  for (const k of r.kinds) { const th = document.createElement("th"); th.textContent = PREVIEW_TITLES[k] || k; head.append(th); }
  table.append(head);
  for (const item of r.items) {
    const tr = document.createElement("tr");
    const label = document.createElement("td");
    label.textContent = `${item.id} · class ${item.y}`;
    tr.append(label);
    for (const k of r.kinds) {
      const td = document.createElement("td");
      const img = document.createElement("img");
      img.src = `/api/preview/${item.index}/${k}.png?v=${r.version}`;
      img.alt = `${k} of ${item.id}`;
      if (k === "cutout") img.className = "checker";
      if (k === "pfg") img.title = "p(fg) per patch: dark purple 0 (background), teal 0.5, yellow 1 (foreground)";
      td.append(img);
      tr.append(td);
    }
    table.append(tr);
  }
}

// ----------------------------------------------------------------------------- zoom, keys, wiring
function setZoom(step) {
  const current = zoomValue();
  if (step === 0) { S.zoom = "fit"; }
  else if (step > 0) { S.zoom = ZOOMS.find((z) => z > current + 1e-6) || ZOOMS[ZOOMS.length - 1]; }
  else { S.zoom = [...ZOOMS].reverse().find((z) => z < current - 1e-6) || ZOOMS[0]; }
  localStorage.setItem("abs-zoom", String(S.zoom));
  draw();
}

function setBrush(value) {
  S.brush = value;
  $("#btn-brush").classList.toggle("bg", value === 0);
  $("#brush-name").textContent = value ? "foreground" : "background";
}

function toggleGrid() {
  S.showGrid = !S.showGrid;
  $("#btn-grid").classList.toggle("on", S.showGrid);
  draw();
}

function toggleClean() {
  S.clean = !S.clean;
  $("#btn-clean").classList.toggle("on", S.clean);
  draw();
}

function setOpacity(percent) {
  const p = Math.max(0, Math.min(100, Math.round(Number(percent))));
  if (!Number.isFinite(p)) return;
  S.opacity = p / 100;
  $("#opacity").value = String(p);
  $("#opacity-text").textContent = `${p}%`;
  localStorage.setItem("abs-opacity", String(p));
  draw();
}

function onKey(e) {
  if ($("#view-label").hidden) return;
  const tag = (e.target.tagName || "").toLowerCase();
  if (tag === "input" || tag === "textarea" || tag === "select") return;
  const key = e.key;
  const ctrl = e.ctrlKey || e.metaKey;
  if (ctrl && (key === "z" || key === "Z")) { e.preventDefault(); e.shiftKey ? restore(S.redo, S.undo) : restore(S.undo, S.redo); return; }
  if (ctrl && (key === "y" || key === "Y")) { e.preventDefault(); restore(S.redo, S.undo); return; }
  if (ctrl || e.altKey) return;
  const actions = {
    ArrowRight: () => go(S.index + 1), d: () => go(S.index + 1), D: () => go(S.index + 1),
    ArrowLeft: () => go(S.index - 1), a: () => go(S.index - 1), A: () => go(S.index - 1),
    n: labelNext, N: labelNext, Enter: accept,
    c: clearGrid, C: clearGrid, f: fillGrid, F: fillGrid, i: invertGrid, I: invertGrid,
    z: () => restore(S.undo, S.redo), Z: () => restore(S.undo, S.redo),
    y: () => restore(S.redo, S.undo), Y: () => restore(S.redo, S.undo),
    b: () => setBrush(1 - S.brush), B: () => setBrush(1 - S.brush),
    g: toggleGrid, G: toggleGrid, v: toggleClean, V: toggleClean,
    "+": () => setZoom(1), "=": () => setZoom(1), "-": () => setZoom(-1), "0": () => setZoom(0),
  };
  const action = actions[key];
  if (action) {
    e.preventDefault();
    Promise.resolve(action()).catch((err) => toast(err.message, true));
  }
}

function wire() {
  const on = (id, fn) => $(id).addEventListener("click", () => Promise.resolve(fn()).catch((err) => toast(err.message, true)));
  on("#btn-prev", () => go(S.index - 1));
  on("#btn-next", () => go(S.index + 1));
  on("#btn-label-next", labelNext);
  on("#btn-accept", accept);
  on("#btn-brush", () => setBrush(1 - S.brush));
  on("#btn-clear", clearGrid);
  on("#btn-fill", fillGrid);
  on("#btn-invert", invertGrid);
  on("#btn-undo", () => restore(S.undo, S.redo));
  on("#btn-redo", () => restore(S.redo, S.undo));
  on("#btn-zoom-in", () => setZoom(1));
  on("#btn-zoom-out", () => setZoom(-1));
  on("#btn-zoom-fit", () => setZoom(0));
  on("#btn-grid", toggleGrid);
  on("#btn-clean", toggleClean);
  $("#opacity").addEventListener("input", (e) => setOpacity(e.target.value));
  $("#opacity").addEventListener("change", (e) => e.target.blur());  // the keys work again after a drag
  on("#btn-train", async () => {
    const a = await api("POST", "/api/assist/train");
    renderAssist(a);
    toast("training the detector in the background");
  });
  $("#import-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (file) importFile(file);
  });
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => { if (S.zoom === "fit") draw(); });
  document.addEventListener("visibilitychange", async () => {
    // another tab may have changed this image: show the stored label again (when nothing is in flight)
    if (document.visibilityState === "visible" && S.index !== null && S.pending === 0 && !S.stroke) {
      const index = S.index;
      S.index = null;
      await showImage(index).catch((err) => toast(err.message, true));
    }
  });
  setupPointer();
  const z = localStorage.getItem("abs-zoom");
  if (z && z !== "fit" && Number.isFinite(Number(z))) S.zoom = Number(z);
  const o = localStorage.getItem("abs-opacity");
  if (o !== null && Number.isFinite(Number(o))) setOpacity(o);
}

async function poll() {
  if (document.visibilityState !== "visible") return;
  const before = S.info && S.info.assist ? S.info.assist.version : 0;
  await refreshInfo();
  const after = S.info.assist ? S.info.assist.version : 0;
  // a new detector: refresh the suggestion of an untouched, unlabelled image
  if (after !== before && S.index !== null && S.saved === null && !S.stroke && !$("#view-label").hidden) {
    const index = S.index;
    S.index = null;
    await showImage(index);
  }
}

async function main() {
  wire();
  try { await refreshInfo(); } catch (err) { toast(err.message, true); }
  await route();
  setInterval(() => poll().catch(() => {}), 4000);
}

main();
