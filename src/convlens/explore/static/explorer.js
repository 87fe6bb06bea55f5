/* convlens explore: conv, transposed conv and C, drawn from the settings in the URL query.
 *
 * Geometry follows convlens.arithmetic.LayerSpec (the same definitions as PyTorch): per axis,
 * output o reads input i through tap t where i = o*s + t*d - p_lo. For a transposed conv the
 * same triples are read the other way round (its input is the conv's output side). The
 * browser test (tests/test_explore_browser.py) checks every number here against the Python
 * engine and against torch. Vanilla JS, no network, no build step.
 */
"use strict";
(function () {
  const SVGNS = "http://www.w3.org/2000/svg";
  const CFG = JSON.parse(document.body.getAttribute("data-config"));
  const LIM = CFG.limits;
  const KEYS = CFG.keys;
  const PARAMS = ["input", "kernel", "stride", "padding", "dilation", "output_padding"];
  const LOW = { input: 1, kernel: 1, stride: 1, padding: 0, dilation: 1, output_padding: 0 };
  const SUBS = "₀₁₂₃₄₅₆₇₈₉";
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ small helpers
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const prod = (xs) => xs.reduce((a, b) => a * b, 1);
  const quote = (v) => "'" + String(v) + "'";
  const sub = (n) => String(n).split("").map((c) => SUBS[Number(c)]).join("");
  const allEqual = (xs) => xs.every((v) => v === xs[0]);
  const times = (xs) => xs.join("×");
  function show(values) {
    // one value per axis: a scalar if all equal, else a tuple (as PyTorch prints it)
    if (typeof values === "string") return quote(values);
    return allEqual(values) ? String(values[0]) : "(" + values.join(", ") + ")";
  }
  function message(param, expected, received, hint) {
    return { param, text: param + ": expected " + expected + ", received " + received + (hint ? ". " + hint : "") };
  }
  function hue(t, n) {
    return n <= 1 ? 210 : Math.round((t * 360) / n + 20) % 360;
  }
  function tapColour(t, n) {
    return "hsl(" + hue(t, n) + ", 70%, 62%)";
  }

  // ------------------------------------------------------------------ state: parse and print
  // A raw state holds strings (from the URL query or the form); parse() validates it.
  function parseValue(key, text, dims, errors) {
    const raw = String(text).trim().toLowerCase();
    if (key === "padding" && (raw === "same" || raw === "valid")) return raw;
    const items = raw.split(",").map((v) => v.trim());
    const top = LIM[key];
    const range = top === undefined ? "an int ≥ " + LOW[key] : "an int from " + LOW[key] + " to " + top;
    const per = dims === 1 ? range : range + " (or " + dims + " of them, comma-separated, one per axis)";
    const expected = key === "padding" ? per + ", 'same' or 'valid'" : per;
    if (items.length !== 1 && items.length !== dims) {
      errors.push(message(key, expected, quote(text), dims === 1 ? "dims=1 takes one value" : ""));
      return null;
    }
    const out = [];
    for (const item of items) {
      if (!/^[0-9]{1,6}$/.test(item)) {
        errors.push(message(key, expected, quote(text)));
        return null;
      }
      const v = Number(item);
      if (v < LOW[key] || (top !== undefined && v > top)) {
        errors.push(message(key, expected, quote(text)));
        return null;
      }
      out.push(v);
    }
    return items.length === 1 ? Array(dims).fill(out[0]) : out;
  }

  function fromInitial(key, dims) {
    const v = CFG.initial[key];
    if (typeof v === "string") return v;
    return Array.from({ length: dims }, (_, a) => v[Math.min(a, v.length - 1)]);
  }

  // raw: {key: string}; returns {state, errors, notes}
  function parse(raw) {
    const errors = [];
    const notes = [];
    const st = { mode: CFG.initial.mode, dims: CFG.initial.dims, step: 0, by: CFG.initial.by };
    if ("mode" in raw) {
      const m = String(raw.mode).trim().toLowerCase();
      if (m === "conv" || m === "transpose") st.mode = m;
      else errors.push(message("mode", "'conv' or 'transpose'", quote(raw.mode)));
    }
    if ("dims" in raw) {
      const d = String(raw.dims).trim();
      if (d === "1" || d === "2") st.dims = Number(d);
      else errors.push(message("dims", "1 or 2 (the explorer draws 1-D and 2-D)", quote(raw.dims)));
    } else {
      for (const key of PARAMS) {
        if (key in raw && String(raw[key]).split(",").length === 2) st.dims = 2;
      }
    }
    for (const key of PARAMS) {
      if (key in raw) {
        const v = parseValue(key, raw[key], st.dims, errors);
        st[key] = v === null ? fromInitial(key, st.dims) : v;
      } else {
        st[key] = fromInitial(key, st.dims);
      }
    }
    if ("by" in raw) {
      const b = String(raw.by).trim().toLowerCase();
      if (b === "input" || b === "output") st.by = b;
      else errors.push(message("by", "'input' or 'output'", quote(raw.by)));
    }
    let step = CFG.initial.step;
    if ("step" in raw) {
      const s = String(raw.step).trim();
      if (/^[0-9]{1,7}$/.test(s)) step = Number(s);
      else errors.push(message("step", "an int ≥ 0", quote(raw.step)));
    }
    st.step = step;
    if (!errors.length) errors.push(...validate(st));
    return { state: st, errors, notes };
  }

  function queryOf(st) {
    const parts = ["mode=" + st.mode, "dims=" + st.dims];
    for (const key of PARAMS) {
      if (key === "output_padding" && st.mode === "conv") continue;
      const v = st[key];
      parts.push(key + "=" + (typeof v === "string" ? v : allEqual(v) ? v[0] : v.join(",")));
    }
    if (st.mode === "transpose" && st.by === "output") parts.push("by=output");
    if (st.step > 0) parts.push("step=" + st.step);
    return "?" + parts.join("&");
  }

  // ------------------------------------------------------------------ geometry (as LayerSpec)
  function padPairs(st) {
    return st.kernel.map((k, a) => {
      if (st.padding === "valid") return [0, 0];
      if (st.padding === "same") {
        const total = st.dilation[a] * (k - 1);
        const lo = Math.floor(total / 2);
        return [lo, total - lo];
      }
      return [st.padding[a], st.padding[a]];
    });
  }
  const convLength = (i, k, s, lo, hi, d) => Math.floor((i + lo + hi - d * (k - 1) - 1) / s) + 1;
  const tconvLength = (i, k, s, p, d, op) => (i - 1) * s - 2 * p + d * (k - 1) + op + 1;

  function validate(st) {
    const errs = [];
    const n = st.dims;
    if (st.mode === "conv") {
      if (st.output_padding.some((v) => v !== 0)) {
        errs.push(message("output_padding", "0 for a convolution (output_padding belongs to transposed convolutions)", show(st.output_padding)));
      }
      if (st.padding === "same" && st.stride.some((s) => s !== 1)) {
        errs.push(message("stride", "1 in every dimension with padding='same' (PyTorch does not support 'same' for strided convolutions)", show(st.stride)));
      }
      if (errs.length) return errs;
      const pads = padPairs(st);
      for (let a = 0; a < n; a++) {
        const e = st.dilation[a] * (st.kernel[a] - 1) + 1;
        const [lo, hi] = pads[a];
        const i = st.input[a];
        if (i + lo + hi < e) {
          const where = n > 1 ? " (" + (a === 0 ? "rows" : "columns") + ")" : "";
          errs.push(message("kernel", "an effective kernel (dilation·(kernel−1)+1 = " + e + ") no larger than the padded input (" + i + "+" + lo + "+" + hi + " = " + (i + lo + hi) + ")" + where, show(st.kernel), "PyTorch refuses this convolution"));
          break;
        }
      }
      return errs;
    }
    if (typeof st.padding === "string") {
      errs.push(message("padding", "ints for a transposed convolution ('same' and 'valid' are for conv only)", quote(st.padding)));
      return errs;
    }
    const bad = st.output_padding.some((op, a) => !(op < st.stride[a] || op < st.dilation[a]));
    if (bad) {
      errs.push(message("output_padding", "a value smaller than either stride or dilation in each dimension (stride=" + show(st.stride) + ", dilation=" + show(st.dilation) + ")", show(st.output_padding), "PyTorch's rule: output_padding < max(stride, dilation)"));
      return errs;
    }
    const sizes = st.input.map((i, a) => tconvLength(i, st.kernel[a], st.stride[a], st.padding[a], st.dilation[a], st.output_padding[a]));
    if (sizes.some((o) => o < 1)) {
      errs.push(message("padding", "a padding that leaves at least one output of the transposed convolution", show(st.padding), "input " + times(st.input) + " gives output size " + times(sizes)));
    }
    return errs;
  }

  // Per axis: A = size on the conv's output side, B = size on the conv's input side, and the
  // (a, tap, b) triples with b = a*s + t*d - lo that land inside [0, B).
  function geometry(st) {
    const conv = st.mode === "conv";
    const pads = padPairs(st);
    const axes = st.kernel.map((k, a) => {
      const s = st.stride[a], d = st.dilation[a], op = st.output_padding[a];
      const [lo, hi] = pads[a];
      const A = conv ? convLength(st.input[a], k, s, lo, hi, d) : st.input[a];
      const B = conv ? st.input[a] : tconvLength(st.input[a], k, s, lo, d, op);
      const byA = Array.from({ length: A }, () => []);
      const byB = Array.from({ length: B }, () => []);
      let count = 0;
      for (let x = 0; x < A; x++) {
        for (let t = 0; t < k; t++) {
          const y = x * s + t * d - lo;
          if (y >= 0 && y < B) {
            byA[x].push([t, y]);
            byB[y].push([t, x]);
            count++;
          }
        }
      }
      byB.forEach((list) => list.sort((p, q) => p[0] - q[0]));
      return { k, s, d, lo, hi, op, A, B, byA, byB, count };
    });
    const A = axes.map((x) => x.A), B = axes.map((x) => x.B);
    return {
      st, conv, axes, dims: st.dims,
      input: conv ? B : A,
      output: conv ? A : B,
      kernel: st.kernel,
      nnz: prod(axes.map((x) => x.count)),
      rows: conv ? prod(A) : prod(B),
      cols: conv ? prod(B) : prod(A),
    };
  }

  // ---- cells of a 1-D or 2-D grid: flat index <-> per-axis position
  function unflat(index, shape) {
    return shape.length === 1 ? [index] : [Math.floor(index / shape[1]), index % shape[1]];
  }
  function flat(pos, shape) {
    return shape.length === 1 ? pos[0] : pos[0] * shape[1] + pos[1];
  }
  // cartesian product of per-axis lists
  function product(lists) {
    let out = [[]];
    for (const list of lists) {
      const next = [];
      for (const head of out) for (const item of list) next.push(head.concat([item]));
      out = next;
    }
    return out;
  }
  // terms of one cell: on the conv-output side (byA) or the conv-input side (byB)
  function termsA(g, pos) {
    return product(g.axes.map((x, a) => x.byA[pos[a]])).map((ts) => ({ tap: ts.map((p) => p[0]), other: ts.map((p) => p[1]) }));
  }
  function termsB(g, pos) {
    return product(g.axes.map((x, a) => x.byB[pos[a]])).map((ts) => ({ tap: ts.map((p) => p[0]), other: ts.map((p) => p[1]) }));
  }
  function overlap(g, pos) {
    return prod(g.axes.map((x, a) => x.byB[pos[a]].length));
  }

  // ---- names as the seed writes them: w₁₁x₁₁, indices from 1
  function name(symbol, pos, shape) {
    const big = shape.some((v) => v > 9);
    return symbol + pos.map((v) => sub(v + 1)).join(big && pos.length > 1 ? "," : "");
  }
  function formulaOf(g, outPos) {
    const yName = name("y", outPos, g.output);
    let terms;
    if (g.conv) terms = termsA(g, outPos).map((t) => [t.tap, t.other]);
    else terms = termsB(g, outPos).map((t) => [t.tap, t.other]);
    const text = terms.map(([tap, x]) => name("w", tap, g.kernel) + name("x", x, g.input)).join(" + ");
    const taps = prod(g.kernel);
    if (!terms.length) {
      return yName + " = 0" + (g.conv ? " (every kernel tap falls on the zero padding)" : " (no kernel tap lands here)");
    }
    let note = "";
    if (g.conv && terms.length < taps) note = "   (" + (taps - terms.length) + " of " + taps + " taps fall on the zero padding)";
    return yName + " = " + text + note;
  }

  // ---- sizes, formulas, collisions
  function sizeFormula(g, a) {
    const x = g.axes[a];
    const i = g.input[a], o = g.output[a];
    if (g.conv) {
      return "o = ⌊(i + p_lo + p_hi − d·(k−1) − 1) / s⌋ + 1 = ⌊(" + i + " + " + x.lo + " + " + x.hi + " − " + x.d + "·(" + x.k + "−1) − 1) / " + x.s + "⌋ + 1 = " + o;
    }
    return "o = (i − 1)·s − 2p + d·(k−1) + output_padding + 1 = (" + i + " − 1)·" + x.s + " − 2·" + x.lo + " + " + x.d + "·(" + x.k + "−1) + " + x.op + " + 1 = " + o;
  }
  // conv input sizes i with conv(i) = A (per axis), as convlens.arithmetic.colliding_input_sizes
  function collisions(x) {
    const base = (x.A - 1) * x.s + x.d * (x.k - 1) + 1 - x.lo - x.hi;
    const sizes = [];
    for (let i = Math.max(1, base); i <= base + x.s - 1; i++) sizes.push(i);
    return { base, sizes };
  }

  // ------------------------------------------------------------------ drawing
  function cellSize(g, longest) {
    const target = g.dims === 1 ? 620 : 300;
    return Math.max(3, Math.min(g.dims === 1 ? 40 : 34, Math.floor(target / Math.max(1, longest))));
  }

  // A grid of rows × cols cells: a static layer and an overlay for the current step.
  function makeGrid(opts) {
    const { rows, cols, cell, kind } = opts;
    const w = cols * cell, h = rows * cell;
    const root = svg("svg", { viewBox: "0 0 " + (w + 2) + " " + (h + 2), width: w + 2, height: h + 2, role: "img", "aria-label": opts.label, class: "grid " + kind });
    root.appendChild(svg("title", {}, opts.label));
    const base = svg("g", { transform: "translate(1,1)" });
    const over = svg("g", { transform: "translate(1,1)", class: "overlay" });
    const text = cell >= 22 ? Math.max(8, Math.min(13, Math.floor(cell / 2.6))) : 0;
    const small = cell >= 14 ? Math.min(11, Math.floor(cell / 1.8)) : 0;
    const cells = [];
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const info = opts.cell_info(r, c);
        const rect = svg("rect", { x: c * cell, y: r * cell, width: cell, height: cell, class: "cell " + info.cls, "data-r": r, "data-c": c });
        if (info.fill) rect.setAttribute("fill", info.fill);
        for (const [k, v] of Object.entries(info.attrs || {})) rect.setAttribute(k, v);
        base.appendChild(rect);
        cells.push(rect);
        const label = info.label;
        const size = info.small ? small : text;
        if (label && size && label.length * size * 0.6 < cell) {
          base.appendChild(svg("text", { x: c * cell + cell / 2, y: r * cell + cell / 2, "font-size": size, class: "label" }, label));
        }
      }
    }
    root.appendChild(base);
    root.appendChild(over);
    const grid = {
      root, cell, rows, cols, text,
      clear() {
        while (over.firstChild) over.removeChild(over.firstChild);
      },
      mark(r, c, cls, fill, label) {
        if (r < 0 || c < 0 || r >= rows || c >= cols) return;
        const rect = svg("rect", { x: c * cell + 1, y: r * cell + 1, width: Math.max(1, cell - 2), height: Math.max(1, cell - 2), class: "mark " + cls });
        if (fill) rect.setAttribute("fill", fill);
        over.appendChild(rect);
        if (label && text && label.length * text * 0.55 < cell) {
          over.appendChild(svg("text", { x: c * cell + cell / 2, y: r * cell + cell / 2, "font-size": text, class: "label mark-label" }, label));
        }
      },
    };
    return grid;
  }

  function panel(title, caption) {
    const fig = el("figure", { class: "panel" });
    fig.appendChild(el("figcaption", {}, ""));
    fig.firstChild.appendChild(el("strong", {}, title));
    if (caption) fig.firstChild.appendChild(el("span", { class: "caption" }, caption));
    return fig;
  }

  // rc of a per-axis position (1-D grids are one row)
  const rc = (pos) => (pos.length === 1 ? [0, pos[0]] : [pos[0], pos[1]]);
  const shape2 = (shape) => (shape.length === 1 ? [1, shape[0]] : shape);
  const posOf = (r, c, dims) => (dims === 1 ? [c] : [r, c]);

  function matrixView(g, box) {
    const R = g.rows, Q = g.cols;
    const cell = Math.min(box / Q, Math.min(box, 440) / R, 40);
    const big = cell >= 20;
    const mx = big ? 44 : 4, my = big ? 44 : 4;
    const w = Q * cell + mx + 4, h = R * cell + my + 4;
    const root = svg("svg", { viewBox: "0 0 " + w + " " + h, width: Math.ceil(w), height: Math.ceil(h), class: "matrix", role: "img" });
    const label = g.conv
      ? "C: " + R + " rows (outputs y) × " + Q + " columns (inputs x)"
      : "Cᵀ: " + R + " rows (outputs y) × " + Q + " columns (inputs x)";
    root.setAttribute("aria-label", label);
    root.appendChild(svg("title", {}, label));
    const unit = svg("g", { transform: "translate(" + mx + "," + my + ") scale(" + cell + ")" });
    unit.appendChild(svg("rect", { x: 0, y: 0, width: Q, height: R, class: "mzero" }));
    const K = prod(g.kernel);
    const paths = Array.from({ length: K }, () => []);
    const entries = [];
    const outShape = g.output, inShape = g.input;
    // entries of C (conv) or Cᵀ (transposed): row = output pixel, column = input pixel
    const aShape = g.axes.map((x) => x.A);
    for (let ai = 0; ai < prod(aShape); ai++) {
      const apos = unflat(ai, aShape);
      for (const t of termsA(g, apos)) {
        const bi = flat(t.other, g.axes.map((x) => x.B));
        const ti = flat(t.tap, g.kernel);
        const row = g.conv ? ai : bi, col = g.conv ? bi : ai;
        paths[ti].push("M" + col + " " + row + "h1v1h-1z");
        if (big) entries.push([row, col, t.tap]);
      }
    }
    paths.forEach((d, t) => {
      if (d.length) unit.appendChild(svg("path", { d: d.join(""), fill: tapColour(t, K), class: "mnz" }));
    });
    if (big) {
      for (let r = 0; r <= R; r++) unit.appendChild(svg("line", { x1: 0, y1: r, x2: Q, y2: r, class: "mgrid" }));
      for (let c = 0; c <= Q; c++) unit.appendChild(svg("line", { x1: c, y1: 0, x2: c, y2: R, class: "mgrid" }));
    }
    const band = svg("rect", { x: 0, y: 0, width: 0, height: 0, class: "band" });
    unit.appendChild(band);
    root.appendChild(unit);
    if (big) {
      const fs = Math.min(12, cell / 2.4);
      const labels = svg("g", { class: "mlabels" });
      for (const [row, col, tap] of entries) {
        labels.appendChild(svg("text", { x: mx + (col + 0.5) * cell, y: my + (row + 0.5) * cell, "font-size": fs, class: "label" }, name("w", tap, g.kernel)));
      }
      for (let r = 0; r < R; r++) labels.appendChild(svg("text", { x: mx - 4, y: my + (r + 0.5) * cell, "font-size": fs, class: "label rowlabel" }, name("y", unflat(r, outShape), outShape)));
      for (let c = 0; c < Q; c++) {
        const x = mx + (c + 0.5) * cell, y = my - 4;
        labels.appendChild(svg("text", { x, y, "font-size": fs, class: "label collabel", transform: "rotate(-90 " + x + " " + y + ")" }, name("x", unflat(c, inShape), inShape)));
      }
      root.appendChild(labels);
    }
    return {
      root, cell, mx, my, R, Q,
      row(r) {
        band.setAttribute("x", 0); band.setAttribute("y", r); band.setAttribute("width", Q); band.setAttribute("height", 1);
      },
      col(c) {
        band.setAttribute("x", c); band.setAttribute("y", 0); band.setAttribute("width", 1); band.setAttribute("height", R);
      },
    };
  }

  // ------------------------------------------------------------------ the page
  const view = { g: null, step: 0, timer: null, hover: null };

  function clearNode(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function showErrors(errors, notes) {
    const box = $("message");
    clearNode(box);
    if (errors.length) {
      box.appendChild(el("h2", {}, "These settings do not make a layer"));
      const ul = el("ul");
      for (const e of errors) ul.appendChild(el("li", { "data-param": e.param }, e.text));
      box.appendChild(ul);
      box.appendChild(el("p", {}, "Change the setting on the left (or in the address) to continue; nothing below is drawn until then."));
    }
    box.hidden = !errors.length;
    const nb = $("notes");
    clearNode(nb);
    for (const n of notes) nb.appendChild(el("p", {}, n));
    nb.hidden = !notes.length;
    for (const input of document.querySelectorAll("#controls input[type=number], #padding-kind")) {
      const param = input.dataset.param || "padding";
      input.setAttribute("aria-invalid", errors.some((e) => e.param === param) ? "true" : "false");
    }
  }

  function resetNumbers() {
    for (const id of ["input-size", "output-size", "matrix-shape", "nnz"]) $(id).textContent = "—";
    clearNode($("size-formula"));
    clearNode($("collisions"));
    $("formula").textContent = "—";
    $("torch-code").textContent = "—";
    $("cli-code").textContent = "—";
    clearNode($("views"));
    $("views").appendChild(el("p", { class: "placeholder" }, "Nothing to draw until the settings make a valid layer."));
  }

  function fillNumbers(g) {
    $("input-size").textContent = times(g.input);
    $("output-size").textContent = times(g.output);
    $("matrix-shape").textContent = (g.conv ? "C is " : "Cᵀ is ") + g.rows + " × " + g.cols;
    $("nnz").textContent = String(g.nnz);
    const ul = $("size-formula");
    clearNode(ul);
    const lines = g.axes.map((_, a) => sizeFormula(g, a));
    lines.forEach((line, a) => {
      if (a > 0 && allEqual(lines)) return;
      const li = el("li", { "data-testid": "size-formula-axis", "data-axis": a });
      if (g.dims > 1 && !allEqual(lines)) li.appendChild(el("span", { class: "axis" }, a === 0 ? "rows: " : "columns: "));
      li.appendChild(el("code", {}, line));
      ul.appendChild(li);
    });
    const box = $("collisions");
    clearNode(box);
    g.axes.forEach((x, a) => {
      if (a > 0 && allEqual(g.axes.map((y) => JSON.stringify([y.A, y.B, y.k, y.s, y.d, y.lo, y.hi, y.op])))) return;
      const { base, sizes } = collisions(x);
      const where = g.dims > 1 && !allEqual(g.axes.map((y) => y.A + "," + y.B + "," + y.s)) ? (a === 0 ? "Rows: " : "Columns: ") : "";
      const div = el("div", { class: "collide", "data-testid": "colliding", "data-axis": a, "data-sizes": sizes.join(",") });
      if (g.conv) {
        div.appendChild(el("p", {}, where + "A convolution maps each input size " + (sizes.join(", ") || "(none)") + " to " + x.A + (sizes.length > 1 ? ": stride " + x.s + " floors, so " + sizes.length + " sizes collide." : ".")));
        if (x.lo === x.hi) {
          const op = x.B - base;
          div.appendChild(el("p", { class: "hint" }, "The transposed convolution with the same k, s, p, d gives back " + x.B + " from " + x.A + " with output_padding=" + op + (sizes.length > 1 ? " (output_padding = size − " + sizes[0] + ")." : ".")));
        } else {
          div.appendChild(el("p", { class: "hint" }, "padding='same' is asymmetric here (" + x.lo + " before, " + x.hi + " after); a transposed convolution pads both sides alike: use padding=" + x.lo + " and drop the last " + (x.hi - x.lo) + " output."));
        }
      } else {
        div.appendChild(el("p", {}, where + "A convolution with kernel " + x.k + ", stride " + x.s + ", padding " + x.lo + (x.d > 1 ? ", dilation " + x.d : "") + " maps each of the sizes " + (sizes.join(", ") || "(none)") + " to " + x.A + " (this layer's input). output_padding picks which one comes back:"));
        const table = el("table", { class: "ops" });
        const head = el("tr");
        for (const t of ["output_padding", "output size", "a conv maps it to"]) head.appendChild(el("th", { scope: "col" }, t));
        table.appendChild(head);
        const maxOp = Math.max(x.s, x.d) - 1;
        for (let op = 0; op <= maxOp; op++) {
          const T = base + op;
          const tr = el("tr", op === x.op ? { class: "current" } : {});
          tr.appendChild(el("td", {}, String(op) + (op === x.op ? " ← now" : "")));
          tr.appendChild(el("td", {}, T >= 1 ? String(T) : "none (< 1)"));
          let to = "—";
          if (T >= 1) {
            const c = convLength(T, x.k, x.s, x.lo, x.lo, x.d);
            to = c === x.A ? String(c) + " ✓" : String(c) + " (not " + x.A + ": output_padding ≥ stride)";
          }
          tr.appendChild(el("td", {}, to));
          table.appendChild(tr);
        }
        div.appendChild(table);
      }
      box.appendChild(div);
    });
  }

  function fmt(v) {
    return allEqual(v) ? String(v[0]) : "(" + v.join(", ") + ")";
  }
  function cliValue(v) {
    return allEqual(v) ? String(v[0]) : v.join(",");
  }

  function fillCode(g) {
    const st = g.st, n = g.dims;
    const cls = (g.conv ? "Conv" : "ConvTranspose") + n + "d";
    const args = ["1", "1", "kernel_size=" + fmt(st.kernel), "stride=" + fmt(st.stride)];
    args.push("padding=" + (typeof st.padding === "string" ? quote(st.padding) : fmt(st.padding)));
    if (!g.conv && st.output_padding.some((v) => v)) args.push("output_padding=" + fmt(st.output_padding));
    if (st.dilation.some((v) => v !== 1)) args.push("dilation=" + fmt(st.dilation));
    const axes = n === 1 ? "L" : "H, W";
    $("torch-code").textContent = [
      "import torch",
      "import torch.nn as nn",
      "",
      "layer = nn." + cls + "(" + args.join(", ") + ")",
      "x = torch.randn(1, 1, " + st.input.join(", ") + ")  # the input: (N, C, " + axes + ")",
      "y = layer(x)",
      "print(tuple(y.shape))  # (1, 1, " + g.output.join(", ") + "): the output",
    ].join("\n");
    const geo = "--input " + cliValue(st.input) + " --kernel " + cliValue(st.kernel) + " --stride " + cliValue(st.stride);
    const dil = st.dilation.some((v) => v !== 1) ? " --dilation " + cliValue(st.dilation) : "";
    const pad = typeof st.padding === "string" ? st.padding : cliValue(st.padding);
    const opt = !g.conv ? " --output-padding " + cliValue(st.output_padding) : "";
    const lines = [];
    if (g.conv) lines.push("convlens arith conv " + geo + " --padding " + pad + dil + " --dims " + n);
    else lines.push("convlens arith transpose " + geo + " --padding " + pad + opt + dil + " --dims " + n);
    if (n === 2 && typeof st.padding !== "string") {
      if (g.conv) {
        lines.push("convlens figure conv " + geo + " --padding " + pad + dil + " --out conv.gif");
        lines.push("convlens figure matrix " + geo + " --padding " + pad + dil + " --out C.png");
      } else {
        lines.push("convlens figure transpose " + geo + " --padding " + pad + dil + opt + " --view scatter --out scatter.gif");
        lines.push("convlens figure transpose " + geo + " --padding " + pad + dil + opt + " --view fractional --out fractional.gif");
      }
    }
    const ex = ["convlens explore --mode " + st.mode + " --dims " + n, geo, "--padding " + pad];
    if (dil) ex.push(dil.trim());
    if (!g.conv && st.output_padding.some((v) => v)) ex.push(opt.trim());
    ex.push("--out explorer.html");
    lines.push(ex.join(" "));
    $("cli-code").textContent = lines.join("\n");
  }

  // ---- the views of one geometry; returns a function that draws step `k`
  function buildViews(g) {
    const box = $("views");
    clearNode(box);
    const st = g.st;
    const ax = g.axes;
    // canvases per axis: conv: padded input; transposed: the scatter canvas and the fractional one
    const padded = ax.map((x) => x.B + x.lo + x.hi);
    const scatter = ax.map((x) => x.B + 2 * x.lo);
    const fractional = ax.map((x) => x.B + x.d * (x.k - 1));
    const canvases = g.conv ? [padded, g.output] : [scatter, fractional, g.input];
    const longest = Math.max(...canvases.map((c) => Math.max(...c)));
    if (longest > LIM.draw) {
      box.appendChild(el("p", { class: "placeholder", "data-testid": "too-large" }, "The grids would be " + longest + " cells along an axis; the explorer draws up to " + LIM.draw + ". The numbers above are exact."));
      return null;
    }
    const cell = cellSize(g, longest);
    const K = prod(g.kernel);
    // the kernel, coloured per tap (the same colours in every view and in C)
    const kshape = shape2(g.kernel);
    const kp = panel("Kernel w", times(g.kernel) + (st.dilation.some((d) => d > 1) ? ", dilation " + show(st.dilation) + ": taps " + show(st.dilation) + " apart" : ""));
    const kgrid = makeGrid({
      rows: kshape[0], cols: kshape[1], cell: Math.max(cell, Math.min(18, Math.floor(220 / Math.max(...kshape)))), kind: "kernel", label: "kernel w, " + times(g.kernel),
      cell_info: (r, c) => {
        const t = posOf(r, c, g.dims);
        return { cls: "tap", fill: tapColour(flat(t, g.kernel), K), label: name("w", t, g.kernel) };
      },
    });
    kp.appendChild(kgrid.root);
    const row1 = el("div", { class: "row" });
    row1.appendChild(kp);
    box.appendChild(row1);
    let draw;
    const hoverTargets = [];
    if (g.conv) {
      const ps = shape2(padded), os = shape2(g.output);
      const lo = ax.map((x) => x.lo);
      const padText = typeof st.padding === "string" ? "padding='" + st.padding + "' = " + ax.map((x) => "(" + x.lo + ", " + x.hi + ")").join(" × ") : "padding " + show(st.padding);
      const ip = panel("Input x", times(g.input) + ", zero-padded to " + times(padded) + " (" + padText + ")");
      const igrid = makeGrid({
        rows: ps[0], cols: ps[1], cell, kind: "input", label: "input x " + times(g.input) + " padded to " + times(padded),
        cell_info: (r, c) => {
          const pos = posOf(r, c, g.dims).map((v, a) => v - lo[a]);
          const inside = pos.every((v, a) => v >= 0 && v < g.input[a]);
          return inside ? { cls: "in", label: name("x", pos, g.input) } : { cls: "pad", label: "0" };
        },
      });
      ip.appendChild(igrid.root);
      const op = panel("Output y", times(g.output) + " = one value per kernel position");
      const ogrid = makeGrid({
        rows: os[0], cols: os[1], cell, kind: "output", label: "output y " + times(g.output),
        cell_info: (r, c) => ({ cls: "out", label: name("y", posOf(r, c, g.dims), g.output), attrs: { "data-testid": "output-cell" } }),
      });
      op.appendChild(ogrid.root);
      hoverTargets.push(ogrid);
      row1.appendChild(ip);
      row1.appendChild(op);
      const mp = matrixPanel(g);
      draw = (k) => {
        const opos = unflat(k, g.output);
        igrid.clear();
        ogrid.clear();
        const [orow, ocol] = rc(opos);
        ogrid.mark(orow, ocol, "cur");
        for (const tap of product(g.kernel.map((kk) => Array.from({ length: kk }, (_, t) => t)))) {
          const u = tap.map((t, a) => opos[a] * ax[a].s + t * ax[a].d);
          const [r, c] = rc(u);
          const inside = u.every((v, a) => v - lo[a] >= 0 && v - lo[a] < g.input[a]);
          igrid.mark(r, c, inside ? "win" : "win onpad", tapColour(flat(tap, g.kernel), K), name("w", tap, g.kernel));
        }
        if (mp) mp.row(k);
        $("step-text").textContent = "Output " + name("y", opos, g.output) + ": the kernel's first tap sits at " + show(opos.map((v, a) => v * ax[a].s)) + " of the padded input (counting from 0, stride " + show(st.stride) + "); row " + (k + 1) + " of C.";
        return formulaOf(g, opos);
      };
    } else {
      const is = shape2(g.input), ss = shape2(scatter), fs = shape2(fractional), os = shape2(g.output);
      const p = ax.map((x) => x.lo);
      const ip = panel("Input x", times(g.input) + " (the conv's output side)");
      const igrid = makeGrid({
        rows: is[0], cols: is[1], cell, kind: "input", label: "input x " + times(g.input),
        cell_info: (r, c) => ({ cls: "in", label: name("x", posOf(r, c, g.dims), g.input) }),
      });
      ip.appendChild(igrid.root);
      const counts = [];
      const sp = panel("Output y as a scatter", times(g.output) + ": each input pixel stamps the kernel, stride " + show(st.stride) + " apart; numbers = overlap count" + (p.some((v) => v) ? "; grey border: cropped by padding " + show(st.padding) : ""));
      let maxCount = 1;
      for (let i = 0; i < prod(g.output); i++) maxCount = Math.max(maxCount, overlap(g, unflat(i, g.output)));
      const sgrid = makeGrid({
        rows: ss[0], cols: ss[1], cell, kind: "output", label: "output y " + times(g.output) + " as a scatter with overlap counts",
        cell_info: (r, c) => {
          const pos = posOf(r, c, g.dims).map((v, a) => v - p[a]);
          if (!pos.every((v, a) => v >= 0 && v < g.output[a])) return { cls: "crop" };
          const n = overlap(g, pos);
          counts.push(n);
          const [yr, yc] = rc(pos);
          return {
            cls: "out count", fill: countColour(n, maxCount), label: String(n), small: true,
            attrs: { "data-testid": "overlap-cell", "data-row": yr, "data-col": yc, "data-count": n },
          };
        },
      });
      sp.appendChild(sgrid.root);
      sp.appendChild(el("p", { class: "caption", "data-testid": "checkerboard" }, "Overlap count from " + Math.min(...counts) + " to " + Math.max(...counts) + ". " + checkerboard(g)));
      hoverTargets.push(sgrid);
      row1.appendChild(ip);
      row1.appendChild(sp);
      // fractionally strided: data pixel j at canvas position j*s + (d(k-1) - p)
      const q = ax.map((x) => x.d * (x.k - 1) - x.lo);
      const dataAt = (u, a) => {
        const c = u - q[a];
        if (c < 0 || c > (ax[a].A - 1) * ax[a].s) return "pad";
        return c % ax[a].s === 0 ? c / ax[a].s : "zero";
      };
      const row2 = el("div", { class: "row" });
      box.appendChild(row2);
      const zeros = show(st.stride.map((s) => s - 1));
      const fp = panel("The same as a fractionally strided conv", "zeros inserted (" + zeros + " between pixels), padded by d·(k−1)−p = " + show(q) + (st.output_padding.some((v) => v) ? " (+ output_padding " + show(st.output_padding) + " at the end)" : "") + ", the flipped kernel slides with stride 1" + (q.some((v) => v < 0) ? "; a negative pad crops" : ""));
      const fgrid = makeGrid({
        rows: fs[0], cols: fs[1], cell, kind: "input", label: "zero-inserted, padded input " + times(fractional),
        cell_info: (r, c) => {
          const u = posOf(r, c, g.dims);
          const kinds = u.map((v, a) => dataAt(v, a));
          if (kinds.includes("pad")) return { cls: "pad", label: "0" };
          if (kinds.includes("zero")) return { cls: "zero", label: "0" };
          return { cls: "in", label: name("x", kinds, g.input) };
        },
      });
      fp.appendChild(fgrid.root);
      // per axis: how many of the window's taps land on real (not inserted, not padding) pixels
      const windowReal = ax.map((x, a) => Array.from({ length: x.B }, (_, y) => {
        let n = 0;
        for (let m = 0; m < x.k; m++) if (typeof dataAt(y + m * x.d, a) === "number") n++;
        return n;
      }));
      const fo = panel("Output y, read by the flipped kernel", times(g.output) + ": numbers = taps on real pixels (the same as the overlap count)");
      const fogrid = makeGrid({
        rows: os[0], cols: os[1], cell, kind: "output", label: "output y " + times(g.output) + " from the fractionally strided conv",
        cell_info: (r, c) => {
          const y = posOf(r, c, g.dims);
          const n = prod(y.map((v, a) => windowReal[a][v]));
          return { cls: "out count", fill: countColour(n, maxCount), label: String(n), small: true, attrs: { "data-testid": "fractional-cell", "data-row": r, "data-col": c, "data-count": n } };
        },
      });
      fo.appendChild(fogrid.root);
      hoverTargets.push(fogrid);
      row2.appendChild(fp);
      row2.appendChild(fo);
      const mp = matrixPanel(g);
      const taps = product(g.kernel.map((kk) => Array.from({ length: kk }, (_, t) => t)));
      draw = (k) => {
        for (const grid of [igrid, sgrid, fgrid, fogrid]) grid.clear();
        if (st.by === "input") {
          const j = unflat(k, g.input);
          const [jr, jc] = rc(j);
          igrid.mark(jr, jc, "cur");
          const u = j.map((v, a) => v * ax[a].s + q[a]);
          const [ur, uc] = rc(u);
          fgrid.mark(ur, uc, "cur");
          const writes = [];
          for (const tap of taps) {
            const y = tap.map((t, a) => j[a] * ax[a].s + t * ax[a].d - p[a]);
            const [sr, sc] = rc(y.map((v, a) => v + p[a]));
            const inside = y.every((v, a) => v >= 0 && v < g.output[a]);
            sgrid.mark(sr, sc, inside ? "win" : "win onpad", tapColour(flat(tap, g.kernel), K), name("w", tap, g.kernel));
            if (inside) {
              const [yr, yc] = rc(y);
              fogrid.mark(yr, yc, "win", tapColour(flat(tap, g.kernel), K));
              writes.push(name("y", y, g.output) + " += " + name("w", tap, g.kernel) + name("x", j, g.input));
            }
          }
          if (mp) mp.col(k);
          $("step-text").textContent = "Input " + name("x", j, g.input) + " stamps the kernel with its first tap at output position " + show(j.map((v, a) => v * ax[a].s - p[a])) + " (counting from 0; negative = cropped by the padding); column " + (k + 1) + " of Cᵀ.";
          return name("x", j, g.input) + " writes: " + (writes.join(", ") || "nothing (every stamp is cropped)");
        }
        const y = unflat(k, g.output);
        const [yr, yc] = rc(y);
        fogrid.mark(yr, yc, "cur");
        const [sr, sc] = rc(y.map((v, a) => v + p[a]));
        sgrid.mark(sr, sc, "cur");
        for (const m of taps) {
          const u = m.map((v, a) => y[a] + v * ax[a].d);
          const flipped = m.map((v, a) => ax[a].k - 1 - v);
          const [ur, uc] = rc(u);
          const real = u.every((v, a) => typeof dataAt(v, a) === "number");
          fgrid.mark(ur, uc, real ? "win" : "win onpad", tapColour(flat(flipped, g.kernel), K), name("w", flipped, g.kernel));
        }
        for (const t of termsB(g, y)) {
          const [xr, xc] = rc(t.other);
          igrid.mark(xr, xc, "win", tapColour(flat(t.tap, g.kernel), K), name("w", t.tap, g.kernel));
        }
        if (mp) mp.row(k);
        $("step-text").textContent = "Output " + name("y", y, g.output) + ": the flipped kernel covers " + show(y) + " of the zero-inserted canvas; row " + (k + 1) + " of Cᵀ.";
        return formulaOf(g, y);
      };
    }
    // hovering an output cell shows its formula
    for (const grid of hoverTargets) {
      grid.root.addEventListener("mouseover", (ev) => {
        const t = ev.target;
        if (!(t instanceof Element) || !t.classList.contains("cell") || !t.classList.contains("out")) return;
        let r = Number(t.getAttribute("data-r")), c = Number(t.getAttribute("data-c"));
        if (t.hasAttribute("data-row")) {
          r = Number(t.getAttribute("data-row"));
          c = Number(t.getAttribute("data-col"));
        }
        view.hover = formulaOf(g, posOf(r, c, g.dims));
        $("formula").textContent = view.hover;
      });
      grid.root.addEventListener("mouseleave", () => {
        view.hover = null;
        $("formula").textContent = view.stepFormula || "—";
      });
    }
    return draw;

    function matrixPanel(g) {
      const what = g.conv ? "C" : "Cᵀ";
      const mp = panel("Matrix " + what, g.conv
        ? "vec(y) = C·vec(x): row = output pixel, column = input pixel; the current output's row is outlined. (The seed writes Cᵀ: vec(x)ᵀ·C.)"
        : "vec(y) = Cᵀ·vec(x), where C is the conv from " + times(g.output) + " to " + times(g.input) + ": row = output pixel, column = input pixel");
      if (g.nnz > LIM.matrix_nnz) {
        mp.appendChild(el("p", { class: "placeholder" }, what + " has " + g.nnz + " non-zeros; the explorer draws up to " + LIM.matrix_nnz + "."));
        box.appendChild(mp);
        return null;
      }
      const width = Math.min(560, Math.max(240, (document.documentElement.clientWidth || 800) - 60));
      const m = matrixView(g, width);
      mp.appendChild(m.root);
      const readout = el("p", { class: "caption", "aria-live": "polite" }, "Hover the matrix to read an entry.");
      mp.appendChild(readout);
      m.root.addEventListener("mousemove", (ev) => {
        const box2 = m.root.getBoundingClientRect();
        const scale = box2.width / Number(m.root.getAttribute("width"));
        const col = Math.floor(((ev.clientX - box2.left) / scale - m.mx) / m.cell);
        const row = Math.floor(((ev.clientY - box2.top) / scale - m.my) / m.cell);
        if (row < 0 || col < 0 || row >= m.R || col >= m.Q) return;
        const y = unflat(row, g.output), x = unflat(col, g.input);
        let value = "0";
        const terms = g.conv ? termsA(g, y) : termsB(g, y);
        for (const t of terms) if (flat(t.other, g.input) === col) value = name("w", t.tap, g.kernel);
        readout.textContent = what + "[" + (row + 1) + ", " + (col + 1) + "]: " + name("y", y, g.output) + " ← " + name("x", x, g.input) + " = " + value;
      });
      box.appendChild(mp);
      return m;
    }
  }

  // Away from the borders, output y gets one tap per t with t·d ≡ y + p (mod s): the count
  // cycles with period s. Uneven cycles are the checkerboard (Odena et al., Distill 2016).
  function interiorCycle(x) {
    const cycle = Array(x.s).fill(0);
    for (let t = 0; t < x.k; t++) cycle[(t * x.d) % x.s]++;
    return cycle;
  }
  function checkerboard(g) {
    const parts = [];
    const cycles = g.axes.map(interiorCycle);
    const same = cycles.every((c) => c.join() === cycles[0].join());
    cycles.forEach((cycle, a) => {
      if (a > 0 && same) return;
      const x = g.axes[a];
      let where = "Away from the borders";
      if (g.dims > 1) where = same ? "Along each axis, away from the borders," : (a === 0 ? "Along rows, away from the borders," : "Along columns, away from the borders,");
      const per = g.dims > 1 ? " (per axis; a 2-D pixel gets the product)" : "";
      if (cycle.every((c) => c === cycle[0])) {
        const why = x.s === 1 ? "stride 1" : "the " + x.k + " taps split evenly over the " + x.s + " phases of the stride";
        parts.push(where + " every output gets " + cycle[0] + " tap" + (cycle[0] === 1 ? "" : "s") + per + ": no checkerboard (" + why + ").");
      } else {
        parts.push(where + " the count cycles " + cycle.join(", ") + " with period " + x.s + per + ": the checkerboard of a transposed conv, whose " + x.k + " taps do not split evenly over the " + x.s + " phases of the stride" + (cycle.includes(0) ? " (0: positions no tap ever reaches)" : "") + ".");
      }
    });
    return parts.join(" ");
  }

  function countColour(n, max) {
    if (n === 0) return "#ffffff";
    const f = max <= 1 ? 1 : (n - 1) / (max - 1);
    const light = Math.round(88 - 40 * f);
    return "hsl(28, 85%, " + light + "%)";
  }

  function steps(g) {
    return !g.conv && g.st.by === "input" ? prod(g.input) : prod(g.output);
  }

  function drawStep() {
    if (!view.draw) return;
    const n = steps(view.g);
    view.step = Math.min(Math.max(0, view.step), n - 1);
    const slider = $("step");
    slider.max = String(n - 1);
    slider.value = String(view.step);
    $("step-label").textContent = "step " + (view.step + 1) + " of " + n;
    view.stepFormula = view.draw(view.step);
    if (!view.hover) $("formula").textContent = view.stepFormula;
  }

  // ------------------------------------------------------------------ controls <-> state
  function form() {
    return $("controls");
  }
  function radio(name) {
    const checked = form().querySelector("input[name=" + name + "]:checked");
    return checked ? checked.value : null;
  }
  function setRadio(name, value) {
    for (const r of form().querySelectorAll("input[name=" + name + "]")) r.checked = r.value === String(value);
  }

  function syncControls(st) {
    setRadio("mode", st.mode);
    setRadio("dims", st.dims);
    setRadio("by", st.by);
    const separate = st.dims === 2 && PARAMS.some((k) => typeof st[k] !== "string" && !allEqual(st[k]));
    $("separate").checked = separate;
    for (const key of PARAMS) {
      const v = st[key];
      if (key === "padding") $("padding-kind").value = typeof v === "string" ? v : "ints";
      const values = typeof v === "string" ? padPairs(st).map((p) => p[0]) : v;
      $(key + "-0").value = String(values[0]);
      $(key + "-1").value = String(values[Math.min(1, values.length - 1)]);
    }
    updateControlStates();
  }

  function updateControlStates() {
    const mode = radio("mode"), dims = Number(radio("dims"));
    const separate = dims === 2 && $("separate").checked;
    $("separate").disabled = dims !== 2;
    for (const key of PARAMS) {
      $(key + "-1").hidden = !separate;
      $(key + "-0").setAttribute("aria-label", $(key + "-0").labels[0].textContent + (separate ? ", rows" : ""));
      const top = LIM[key];
      for (const a of [0, 1]) if (top !== undefined) $(key + "-" + a).max = String(top);
    }
    const kind = $("padding-kind").value;
    $("padding-kind").disabled = mode !== "conv" && kind === "ints";
    for (const a of [0, 1]) $("padding-" + a).disabled = kind !== "ints";
    // output_padding: only where PyTorch allows it (< max(stride, dilation))
    const hint = $("hint-output_padding");
    const ops = [0, 1].map((a) => $("output_padding-" + a));
    const maxOp = [0, 1].map((a) => Math.max(Number($("stride-" + a).value) || 1, Number($("dilation-" + a).value) || 1) - 1);
    const used = separate ? [0, 1] : [0];
    if (mode === "conv") {
      hint.textContent = "A convolution has no output_padding: it belongs to transposed convolutions.";
      ops.forEach((o) => (o.disabled = o.value === "0"));
    } else if (used.every((a) => maxOp[a] === 0)) {
      hint.textContent = "Only 0 here: PyTorch needs output_padding < max(stride, dilation) = 1. Raise the stride (or the dilation) to choose among the input sizes that collide.";
      ops.forEach((o) => (o.disabled = o.value === "0"));
    } else {
      hint.textContent = "0 to " + used.map((a) => maxOp[a]).join(" / ") + " (PyTorch: output_padding < max(stride, dilation)); it picks one of the colliding sizes listed under Sizes.";
      ops.forEach((o, a) => {
        o.disabled = false;
        o.max = String(Math.max(0, maxOp[a]));
      });
    }
    $("by-choice").hidden = mode !== "transpose";
  }

  function rawFromControls() {
    const dims = Number(radio("dims"));
    const separate = dims === 2 && $("separate").checked;
    const raw = { mode: radio("mode"), dims: String(dims), by: radio("by") || "input", step: String(view.step) };
    for (const key of PARAMS) {
      if (key === "padding" && $("padding-kind").value !== "ints") {
        raw.padding = $("padding-kind").value;
        continue;
      }
      const a = $(key + "-0").value.trim(), b = $(key + "-1").value.trim();
      raw[key] = separate ? a + "," + b : a;
    }
    return raw;
  }

  function rawFromQuery() {
    const raw = {};
    const notes = [];
    const errors = [];
    const seen = new Set();
    for (const [key, value] of new URLSearchParams(window.location.search)) {
      if (!KEYS.includes(key)) {
        notes.push("Ignored the unknown setting " + quote(key) + " in the address (known: " + KEYS.join(", ") + ").");
        continue;
      }
      if (seen.has(key)) errors.push(message(key, "one value", quote(value) + " after " + quote(raw[key])));
      seen.add(key);
      raw[key] = value;
    }
    return { raw, notes, errors };
  }

  function apply(parsed, notes, fromUser) {
    const { state, errors } = parsed;
    showErrors(errors, notes);
    const query = queryOf(state);
    $("share").setAttribute("href", query);
    if (fromUser) {
      try {
        window.history.replaceState(null, "", query);
      } catch (e) {
        // some browsers refuse history changes for file:// pages; the link above still works
      }
    }
    if (errors.length) {
      view.g = null;
      view.draw = null;
      resetNumbers();
      $("step").disabled = true;
      return;
    }
    const g = geometry(state);
    view.g = g;
    view.step = state.step;
    fillNumbers(g);
    fillCode(g);
    view.hover = null;
    view.draw = buildViews(g);
    $("step").disabled = !view.draw;
    if (view.draw) drawStep();
    else $("formula").textContent = formulaOf(g, unflat(Math.min(state.step, prod(g.output) - 1), g.output));
    if (state.step >= steps(g)) {
      showErrors([message("step", "an int from 0 to " + (steps(g) - 1), quote(state.step))], notes);
    }
  }

  function onChange(ev) {
    const target = ev && ev.target;
    const notes = [];
    if (target && target.name === "mode") {
      // a transposed conv takes int padding; a conv has no output_padding
      const kind = $("padding-kind").value;
      if (target.value === "transpose" && kind !== "ints") {
        $("padding-kind").value = "ints";
        if (kind === "valid") for (const a of [0, 1]) $("padding-" + a).value = "0";
        notes.push("padding='" + kind + "' is for convolutions; the transposed convolution gets padding " + $("padding-0").value + " (the conv's padding before each axis).");
      }
      if (target.value === "conv") for (const a of [0, 1]) $("output_padding-" + a).value = "0";
    }
    if (target && target.name === "dims" && target.value === "1") $("separate").checked = false;
    if (target && target.id === "separate" && !target.checked) {
      for (const key of PARAMS) $(key + "-1").value = $(key + "-0").value;
    }
    if (target && target.id === "padding-kind" && target.value !== "ints") {
      const pads = padPairs({ kernel: [0, 1].map((a) => Number($("kernel-" + a).value) || 1), dilation: [0, 1].map((a) => Number($("dilation-" + a).value) || 1), padding: target.value });
      for (const a of [0, 1]) $("padding-" + a).value = String(pads[a][0]);
    }
    if (target && target.name && ["mode", "dims", "by"].includes(target.name)) view.step = 0;
    updateControlStates();
    apply(parse(rawFromControls()), notes, true);
  }

  function setStep(k) {
    if (!view.g || !view.draw) return;
    const n = steps(view.g);
    view.step = ((k % n) + n) % n;
    drawStep();
    const query = queryOf(Object.assign({}, view.g.st, { step: view.step }));
    $("share").setAttribute("href", query);
    try {
      window.history.replaceState(null, "", query);
    } catch (e) {
      // see apply()
    }
  }

  function togglePlay(force) {
    const play = $("play");
    const on = force === undefined ? !view.timer : force;
    if (view.timer) window.clearInterval(view.timer);
    view.timer = on ? window.setInterval(() => setStep(view.step + 1), 700) : null;
    play.textContent = on ? "Pause" : "Play";
    play.setAttribute("aria-pressed", on ? "true" : "false");
  }

  function start() {
    const f = form();
    f.addEventListener("submit", (ev) => ev.preventDefault());
    f.addEventListener("change", (ev) => {
      if (ev.target.id !== "step") onChange(ev);
    });
    f.addEventListener("input", (ev) => {
      if (ev.target.type === "number") onChange(ev);
    });
    $("step").addEventListener("input", () => setStep(Number($("step").value)));
    $("prev").addEventListener("click", () => setStep(view.step - 1));
    $("next").addEventListener("click", () => setStep(view.step + 1));
    $("play").addEventListener("click", () => togglePlay());
    const q = rawFromQuery();
    const parsed = parse(q.raw);
    parsed.errors.unshift(...q.errors);
    syncControls(parsed.state);
    apply(parsed, q.notes, false);
  }

  try {
    start();
  } catch (e) {
    // never a blank page: say what went wrong where the reader looks
    const box = $("message");
    box.hidden = false;
    box.textContent = "The explorer failed to start: " + (e && e.message ? e.message : String(e));
  }
})();
