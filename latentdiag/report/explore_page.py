"""The explorer page's HTML, styles and script (see :mod:`latentdiag.report.explore`).

One template: ``__TITLE__``, ``__PALETTE__`` (the report's categorical colours, a JSON list)
and ``__DATA__`` (the payload, JSON) are filled in by ``explore._page``. The script draws
points into the canvas's pixel buffer (``ImageData``), finds the point under the cursor with a
uniform grid over the projection, and exposes ``window.explorer`` for tests.
"""

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>latentdiag explore — __TITLE__</title>
<style>
  html, body { margin: 0; height: 100%; font: 13px/1.4 system-ui, sans-serif; color: #222; }
  #app { display: flex; height: 100%; }
  #side { width: 290px; padding: 10px 12px; box-sizing: border-box; overflow-y: auto;
          border-right: 1px solid #ddd; background: #fafafa; }
  #main { position: relative; flex: 1; overflow: hidden; }
  canvas { display: block; width: 100%; height: 100%; cursor: crosshair; }
  h1 { font-size: 15px; margin: 0 0 4px; word-break: break-all; }
  .muted { color: #666; }
  label { display: block; margin: 10px 0 2px; font-weight: 600; }
  select, input { width: 100%; box-sizing: border-box; font: inherit; padding: 3px; }
  #legend div, #selection div { display: flex; align-items: center; gap: 6px; }
  .sw { width: 11px; height: 11px; border-radius: 2px; flex: none; }
  #tip { position: absolute; pointer-events: none; background: #fff; border: 1px solid #bbb;
         border-radius: 4px; padding: 6px 8px; box-shadow: 0 2px 6px rgba(0,0,0,.15);
         max-width: 300px; display: none; z-index: 2; }
  #tip .thumb { width: 64px; height: 64px; image-rendering: pixelated; margin-bottom: 4px;
                border: 1px solid #ccc; }
  #tip table { border-collapse: collapse; }
  #tip td { padding: 0 6px 0 0; vertical-align: top; }
  #tip td:first-child { color: #666; }
  #box { position: absolute; border: 1px dashed #0072B2; background: rgba(0,114,178,.08);
         display: none; pointer-events: none; }
  .bar { height: 8px; background: #0072B2; border-radius: 2px; }
  #help { margin-top: 14px; color: #666; }
  kbd { font: 11px monospace; border: 1px solid #ccc; border-radius: 3px; padding: 0 3px; }
</style>
</head>
<body>
<div id="app">
  <div id="side">
    <h1>__TITLE__</h1>
    <div class="muted" id="counts"></div>
    <label for="space">Space</label>
    <select id="space"></select>
    <label for="colour">Colour by</label>
    <select id="colour"></select>
    <label for="search">Find a row by id</label>
    <input id="search" placeholder="sample id, then Enter" autocomplete="off">
    <div class="muted" id="found"></div>
    <label>Legend</label>
    <div id="legend"></div>
    <label>Selection</label>
    <div id="selection" class="muted">Shift-drag a box to select points.</div>
    <div id="help">Drag to pan, wheel to zoom, <kbd>shift</kbd>-drag to select,
      double-click to reset the view.</div>
  </div>
  <div id="main">
    <canvas id="plot"></canvas>
    <div id="box"></div>
    <div id="tip"></div>
  </div>
</div>
<script type="application/json" id="payload">__DATA__</script>
<script>
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("payload").textContent);
  const PALETTE = __PALETTE__;
  const N = D.n_points;
  const $ = (id) => document.getElementById(id);

  function decode(text, Type) {
    const bin = atob(text);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }
  const TYPES = { uint8: Uint8Array, uint16: Uint16Array, int32: Int32Array, float32: Float32Array };
  // Coordinates come as uint16 over [-1, 1] (see explore._quantised).
  const spaces = D.spaces.map((s) => ({
    name: s.name, xy: Float32Array.from(decode(s.xy, Uint16Array), (v) => v / 32767.5 - 1),
  }));
  const columns = D.columns.map((c) => Object.assign({}, c, { values: decode(c.data, TYPES[c.dtype]) }));
  const tileOf = decode(D.tile_of, Int32Array);
  const sheetUrls = D.sheets.map((b) => {
    const bin = atob(b);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return URL.createObjectURL(new Blob([bytes], { type: "image/jpeg" }));
  });
  const idIndex = new Map(D.ids.map((id, i) => [id, i]));

  // -- colours -----------------------------------------------------------------------------
  function hex(h) { return [parseInt(h.slice(1, 3), 16), parseInt(h.slice(3, 5), 16), parseInt(h.slice(5, 7), 16)]; }
  function packed(rgb) { return (255 << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0]; }
  const RAMP = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"].map(hex);  // viridis
  function ramp(t) {
    if (!(t >= 0)) t = 0; if (t > 1) t = 1;
    const x = t * (RAMP.length - 1), i = Math.min(RAMP.length - 2, Math.floor(x)), f = x - i;
    return RAMP[i].map((v, k) => Math.round(v + (RAMP[i + 1][k] - v) * f));
  }
  function categoryColour(k) {
    if (k < PALETTE.length) return hex(PALETTE[k]);
    const h = (k * 137.508) % 360, s = 0.55, l = 0.5;  // golden-angle hues past the palette
    const f = (n) => { const a = s * Math.min(l, 1 - l), q = (n + h / 30) % 12;
      return Math.round(255 * (l - a * Math.max(-1, Math.min(q - 3, 9 - q, 1)))); };
    return [f(0), f(8), f(4)];
  }
  const GREY = [170, 170, 170];
  const colours = new Uint32Array(N);
  let colourColumn = null;
  function setColour(name) {
    colourColumn = columns.find((c) => c.name === name) || null;
    const c = colourColumn;
    if (!c) { colours.fill(packed([0, 114, 178])); }
    else if (c.kind === "categorical") {
      const missing = { uint8: 255, uint16: 65535, int32: 2147483647 }[c.dtype];
      const table = c.categories.map((_, k) => packed(categoryColour(k)));
      for (let i = 0; i < N; i++) { const v = c.values[i]; colours[i] = v === missing ? packed(GREY) : table[v]; }
    } else {
      const span = c.max - c.min || 1;
      for (let i = 0; i < N; i++) { const v = c.values[i]; colours[i] = Number.isFinite(v) ? packed(ramp((v - c.min) / span)) : packed(GREY); }
    }
    legend();
    draw();
  }
  function legend() {
    const el = $("legend"), c = colourColumn;
    el.textContent = "";
    if (!c) return;
    if (c.kind === "categorical") {
      const counts = new Array(c.categories.length).fill(0);
      for (let i = 0; i < N; i++) if (c.values[i] < counts.length) counts[c.values[i]]++;
      c.categories.slice(0, 40).forEach((name, k) => {
        const row = document.createElement("div");
        const sw = document.createElement("span"); sw.className = "sw";
        sw.style.background = "rgb(" + categoryColour(k).join(",") + ")";
        row.append(sw, document.createTextNode(name + " (" + counts[k].toLocaleString() + ")"));
        el.append(row);
      });
      if (c.categories.length > 40) el.append(document.createTextNode("… and " + (c.categories.length - 40) + " more"));
    } else {
      el.textContent = c.min.toPrecision(4) + " (dark) … " + c.max.toPrecision(4) + " (yellow)";
    }
  }

  // -- the view ------------------------------------------------------------------------------
  const canvas = $("plot"), ctx = canvas.getContext("2d");
  let W = 0, H = 0, dpr = 1, image = null, pixels = null;
  let space = spaces[0];
  const view = { cx: 0, cy: 0, scale: 1 };
  let highlight = -1, selected = null, lastDrawMs = 0;
  function resize() {
    dpr = window.devicePixelRatio || 1;
    const r = canvas.getBoundingClientRect();
    W = Math.max(1, Math.round(r.width * dpr)); H = Math.max(1, Math.round(r.height * dpr));
    canvas.width = W; canvas.height = H;
    image = ctx.createImageData(W, H); pixels = new Uint32Array(image.data.buffer);
  }
  function resetView() { view.cx = 0; view.cy = 0; view.scale = 0.46 * Math.min(W, H); }
  function sx(x) { return W / 2 + (x - view.cx) * view.scale; }
  function sy(y) { return H / 2 - (y - view.cy) * view.scale; }
  function draw() {
    if (!pixels) return;
    const t0 = performance.now();
    pixels.fill(0xffffffff);
    const xy = space.xy, s = view.scale, ox = W / 2 - view.cx * s, oy = H / 2 + view.cy * s;
    const size = Math.max(2, Math.min(6, Math.round(dpr * (1.5 + Math.log2(s / (0.46 * Math.min(W, H)) + 1)))));
    for (let i = 0; i < N; i++) {
      const px = Math.round(ox + xy[2 * i] * s), py = Math.round(oy - xy[2 * i + 1] * s);
      if (px < 0 || py < 0 || px + size > W || py + size > H) continue;
      const c = colours[i];
      for (let dy = 0; dy < size; dy++) { const row = (py + dy) * W + px; for (let dx = 0; dx < size; dx++) pixels[row + dx] = c; }
    }
    ctx.putImageData(image, 0, 0);
    if (selected) {
      ctx.strokeStyle = "rgba(0,0,0,.7)"; ctx.lineWidth = dpr;
      for (let j = 0; j < Math.min(selected.length, 5000); j++) {
        const i = selected[j]; ctx.strokeRect(sx(xy[2 * i]) - 2 * dpr, sy(xy[2 * i + 1]) - 2 * dpr, 4 * dpr + size, 4 * dpr + size);
      }
    }
    if (highlight >= 0) {
      ctx.strokeStyle = "#D55E00"; ctx.lineWidth = 2 * dpr;
      ctx.beginPath(); ctx.arc(sx(xy[2 * highlight]) + size / 2, sy(xy[2 * highlight + 1]) + size / 2, 7 * dpr, 0, 2 * Math.PI); ctx.stroke();
    }
    lastDrawMs = performance.now() - t0;
  }

  // -- finding the point under the cursor: a uniform grid over [-1, 1]² --------------------
  const G = 128;
  function buildGrid(xy) {
    const cell = new Int32Array(N), count = new Int32Array(G * G + 1);
    for (let i = 0; i < N; i++) {
      const gx = Math.min(G - 1, Math.max(0, Math.floor((xy[2 * i] + 1) / 2 * G)));
      const gy = Math.min(G - 1, Math.max(0, Math.floor((xy[2 * i + 1] + 1) / 2 * G)));
      cell[i] = gy * G + gx; count[cell[i] + 1]++;
    }
    for (let k = 0; k < G * G; k++) count[k + 1] += count[k];
    const order = new Int32Array(N), fill = count.slice(0, G * G);
    for (let i = 0; i < N; i++) order[fill[cell[i]]++] = i;
    return { start: count, order: order };
  }
  spaces.forEach((s) => { s.grid = buildGrid(s.xy); });
  function nearest(mx, my, radiusPx) {
    const x = (mx - W / 2) / view.scale + view.cx, y = view.cy - (my - H / 2) / view.scale;
    const r = radiusPx / view.scale, xy = space.xy, g = space.grid;
    const x0 = Math.max(0, Math.floor((x - r + 1) / 2 * G)), x1 = Math.min(G - 1, Math.floor((x + r + 1) / 2 * G));
    const y0 = Math.max(0, Math.floor((y - r + 1) / 2 * G)), y1 = Math.min(G - 1, Math.floor((y + r + 1) / 2 * G));
    let best = -1, bestD = r * r;
    for (let gy = y0; gy <= y1; gy++) for (let gx = x0; gx <= x1; gx++) {
      const k = gy * G + gx;
      for (let j = g.start[k]; j < g.start[k + 1]; j++) {
        const i = g.order[j], dx = xy[2 * i] - x, dy = xy[2 * i + 1] - y, d = dx * dx + dy * dy;
        if (d <= bestD) { bestD = d; best = i; }
      }
    }
    return best;
  }

  // -- the tooltip ---------------------------------------------------------------------------
  const tip = $("tip");
  function valueText(c, i) {
    const v = c.values[i];
    if (c.kind === "categorical") return v < c.categories.length ? c.categories[v] : "(missing)";
    return Number.isFinite(v) ? String(+v.toPrecision(5)) : "(missing)";
  }
  function showTip(i, mx, my) {
    if (i < 0) { tip.style.display = "none"; return; }
    tip.textContent = "";
    const t = tileOf[i];
    if (t >= 0) {
      const per = D.sheet * D.sheet, sheet = Math.floor(t / per), k = t % per;
      const img = document.createElement("div"); img.className = "thumb";
      const scale = 64 / D.thumb;
      img.style.backgroundImage = "url(" + sheetUrls[sheet] + ")";
      img.style.backgroundSize = (D.sheet * D.thumb * scale) + "px auto";
      img.style.backgroundPosition = -(k % D.sheet) * 64 + "px " + -Math.floor(k / D.sheet) * 64 + "px";
      tip.append(img);
    }
    const table = document.createElement("table");
    const add = (k, v) => { const tr = table.insertRow(); tr.insertCell().textContent = k; tr.insertCell().textContent = v; };
    add("id", D.ids[i]);
    columns.slice(0, 24).forEach((c) => add(c.name, valueText(c, i)));
    tip.append(table);
    tip.style.display = "block";
    const box = $("main").getBoundingClientRect();
    let left = mx / dpr + 14, top = my / dpr + 14;
    if (left + tip.offsetWidth > box.width) left = mx / dpr - tip.offsetWidth - 14;
    if (top + tip.offsetHeight > box.height) top = Math.max(0, my / dpr - tip.offsetHeight - 14);
    tip.style.left = left + "px"; tip.style.top = top + "px";
    tip.dataset.row = String(i);
  }

  // -- selection -----------------------------------------------------------------------------
  function select(ax, ay, bx, by) {
    const xa = (Math.min(ax, bx) - W / 2) / view.scale + view.cx, xb = (Math.max(ax, bx) - W / 2) / view.scale + view.cx;
    const ya = view.cy - (Math.max(ay, by) - H / 2) / view.scale, yb = view.cy - (Math.min(ay, by) - H / 2) / view.scale;
    const xy = space.xy, out = [];
    for (let i = 0; i < N; i++) { const x = xy[2 * i], y = xy[2 * i + 1]; if (x >= xa && x <= xb && y >= ya && y <= yb) out.push(i); }
    selected = out.length ? out : null;
    composition();
    draw();
  }
  function composition() {
    const el = $("selection");
    el.textContent = "";
    if (!selected) { el.textContent = "Shift-drag a box to select points."; return; }
    el.append(document.createTextNode(selected.length.toLocaleString() + " points"));
    const c = colourColumn;
    if (!c) return;
    if (c.kind === "categorical") {
      const counts = new Array(c.categories.length + 1).fill(0);
      for (const i of selected) { const v = c.values[i]; counts[v < c.categories.length ? v : c.categories.length]++; }
      const order = counts.map((n, k) => [n, k]).filter((p) => p[0] > 0).sort((a, b) => b[0] - a[0]);
      order.slice(0, 20).forEach(([n, k]) => {
        const row = document.createElement("div");
        const sw = document.createElement("span"); sw.className = "sw";
        sw.style.background = k < c.categories.length ? "rgb(" + categoryColour(k).join(",") + ")" : "#aaa";
        const name = k < c.categories.length ? c.categories[k] : "(missing)";
        row.append(sw, document.createTextNode(name + ": " + n.toLocaleString() + " (" + (100 * n / selected.length).toFixed(1) + " %)"));
        el.append(row);
      });
    } else {
      let sum = 0, m = 0, lo = Infinity, hi = -Infinity;
      for (const i of selected) { const v = c.values[i]; if (Number.isFinite(v)) { sum += v; m++; lo = Math.min(lo, v); hi = Math.max(hi, v); } }
      el.append(document.createElement("br"), document.createTextNode(c.name + ": mean " + (m ? (sum / m).toPrecision(4) : "—") + ", " + (m ? lo.toPrecision(4) + " … " + hi.toPrecision(4) : "")));
    }
  }

  // -- controls and events -------------------------------------------------------------------
  spaces.forEach((s, k) => $("space").add(new Option(s.name, String(k))));
  $("space").addEventListener("change", (e) => { space = spaces[+e.target.value]; selected = null; composition(); draw(); });
  const colourable = columns.filter((c) => c.colour);
  colourable.forEach((c) => $("colour").add(new Option(c.name, c.name)));
  if (!colourable.length) $("colour").add(new Option("(no columns)", ""));
  $("colour").addEventListener("change", (e) => { setColour(e.target.value); composition(); });
  $("counts").textContent = N.toLocaleString() + " of " + D.n_rows.toLocaleString() + " rows drawn · " + D.projection.toUpperCase() +
    (D.sheets.length ? " · " + tileOf.filter((t) => t >= 0).length.toLocaleString() + " thumbnails" : "");
  $("search").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    const q = e.target.value.trim();
    let i = idIndex.has(q) ? idIndex.get(q) : D.ids.findIndex((id) => id.indexOf(q) >= 0);
    if (!q) i = -1;
    highlight = i;
    $("found").textContent = i >= 0 ? "found " + D.ids[i] : q ? "no row with id " + q : "";
    if (i >= 0) { view.cx = space.xy[2 * i]; view.cy = space.xy[2 * i + 1]; }
    draw();
    if (i >= 0) showTip(i, sx(space.xy[2 * i]), sy(space.xy[2 * i + 1]));
  });
  let drag = null;
  canvas.addEventListener("mousedown", (e) => {
    drag = { x: e.offsetX * dpr, y: e.offsetY * dpr, cx: view.cx, cy: view.cy, box: e.shiftKey };
  });
  window.addEventListener("mouseup", (e) => {
    if (drag && drag.box) {
      $("box").style.display = "none";
      const r = canvas.getBoundingClientRect();
      select(drag.x, drag.y, (e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr);
    }
    drag = null;
  });
  canvas.addEventListener("mousemove", (e) => {
    const mx = e.offsetX * dpr, my = e.offsetY * dpr;
    if (drag && drag.box) {
      const b = $("box").style;
      b.display = "block"; b.left = Math.min(drag.x, mx) / dpr + "px"; b.top = Math.min(drag.y, my) / dpr + "px";
      b.width = Math.abs(mx - drag.x) / dpr + "px"; b.height = Math.abs(my - drag.y) / dpr + "px";
      return;
    }
    if (drag) {
      view.cx = drag.cx - (mx - drag.x) / view.scale; view.cy = drag.cy + (my - drag.y) / view.scale;
      draw(); tip.style.display = "none"; return;
    }
    showTip(nearest(mx, my, 6 * dpr), mx, my);
  });
  canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const mx = e.offsetX * dpr, my = e.offsetY * dpr;
    const x = (mx - W / 2) / view.scale + view.cx, y = view.cy - (my - H / 2) / view.scale;
    view.scale *= Math.exp(-e.deltaY * 0.0015);
    view.cx = x - (mx - W / 2) / view.scale; view.cy = y + (my - H / 2) / view.scale;
    draw();
  }, { passive: false });
  canvas.addEventListener("dblclick", () => { resetView(); draw(); });
  window.addEventListener("resize", () => { resize(); resetView(); draw(); });

  resize(); resetView();
  const first = D.default_colour && colourable.some((c) => c.name === D.default_colour) ? D.default_colour : (colourable[0] || {}).name;
  if (first) $("colour").value = first;
  setColour(first || "");

  // For tests and scripting: where a row is drawn, its colour, and the last redraw's cost.
  window.explorer = {
    n: N,
    screenOf: (i) => [sx(space.xy[2 * i]) / dpr, sy(space.xy[2 * i + 1]) / dpr],
    colourOf: (i) => colours[i] >>> 0,
    setColour: (name) => { $("colour").value = name; setColour(name); },
    redraw: () => { draw(); return lastDrawMs; },
    get lastDrawMs() { return lastDrawMs; },
  };
})();
</script>
</body>
</html>
"""
