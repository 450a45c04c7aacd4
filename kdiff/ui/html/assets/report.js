// kdiff's HTML report: renders the JSON report embedded in the page (#kdiff-report), offline, with
// uPlot for the plots. After drawing, <body> carries data-rendered="yes", data-plots (how many plots),
// data-drawn (how many drew something on their canvas) and data-errors (the errors the page met),
// which the tests read from a headless browser.
(function () {
  "use strict";
  const errors = [];
  window.addEventListener("error", (event) => errors.push(String(event.message || event)));
  const plots = [];
  const FLOOR = 1e-12;  // a zero drawn on a log scale

  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };
  const num = (value) => (value === null || value === undefined ? NaN : Number(value));
  const fmt = (value) => {
    const x = num(value);
    if (value === null || value === undefined) return "";
    if (Number.isNaN(x)) return String(value);
    if (x === 0) return "0";
    return Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? x.toPrecision(3).replace(/\.?0+$/, "") : x.toExponential(2);
  };
  const positive = (value) => {
    const x = num(value);
    return Number.isFinite(x) ? Math.max(x, FLOOR) : null;
  };
  const shape = (s) => (s ? s.join("×") : "");
  const whole = { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000] };  // integer ticks

  function plot(container, title, caption, options, data) {
    const box = el("div", { class: "plot" }, el("h3", {}, title));
    container.append(box);
    const target = el("div", {});
    box.append(target);
    if (caption) box.append(el("p", {}, caption));
    const width = Math.max(320, Math.floor((container.clientWidth || 1100) / 2) - 30);
    const made = new uPlot(Object.assign({ width: width, height: 240, legend: { live: true } }, options), data, target);
    plots.push(made);
    return made;
  }

  const logY = { x: { time: false }, y: { distr: 3, log: 10 } };
  const line = (label, color, extra) => Object.assign({ label: label, stroke: color, width: 1.6, spanGaps: false,
    points: { show: true, size: 4 }, value: (u, v) => fmt(v) }, extra || {});
  const band = (label, color) => ({ label: label, stroke: color, dash: [5, 4], width: 1, fill: color + "22",
    points: { show: false }, value: (u, v) => fmt(v) });
  const layerAxis = (names) => ({ incrs: whole.incrs, values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) && names[t] !== undefined ? names[t] : "")),
    rotate: -30, size: 60, gap: 2 });

  // ---- the diff report ------------------------------------------------------------------------
  function diffReport(root, r) {
    const layers = r.layers || [];
    const first = r.first_divergence ? r.first_divergence.layer : null;
    verdict(root, layers.length && layers.every((l) => l.status === "match"),
      first ? `The divergence starts at layer '${first}' (#${r.first_divergence.index}).`
        : (layers.length ? `All ${layers.length} layers match.` : "No layers were compared."),
      r.after_fixes ? (r.after_fixes.all_match ? " With every proven fix applied, every layer matches."
        : " With the proven fixes applied, layers still differ.") : "");
    sides(root, r.backends);
    listOf(root, "Warnings", (r.input_warnings || []), "warn");
    findings(root, r.findings || [], r.unexplained);
    curves(root, r);
    picture(root, r.first_divergence_picture);
    layerTable(root, layers, first);
    listOf(root, "Notes", r.notes || []);
  }

  function verdict(root, ok, text, extra) {
    root.append(el("div", { class: "verdict " + (ok ? "ok" : "bad"), id: "verdict" }, text + (extra || "")));
  }

  function sides(root, backends) {
    if (!backends) return;
    const box = el("div", { class: "sides" });
    for (const side of ["a", "b"]) {
      const b = backends[side];
      if (!b) continue;
      const versions = Object.entries(b.versions || {}).map(([k, v]) => `${k} ${v}`).join(", ");
      box.append(el("div", { class: "side" }, el("b", {}, side.toUpperCase()), ` ${b.name} (${versions}; ${b.device || "?"})`,
        el("div", { class: "mono" }, b.model || ""), b.weights ? el("div", { class: "mono" }, b.weights) : null,
        b.layout ? el("div", {}, `layout: ${b.layout}`) : null));
    }
    root.append(box);
  }

  function listOf(root, title, items, cls) {
    if (!items.length) return;
    root.append(el("h2", {}, title), el("ul", { class: "notes " + (cls || "") }, items.map((t) => el("li", {}, t))));
  }

  function errorSize(e) {
    return e ? `max abs ${fmt(e.max_abs)}` + (e.max_rel !== null && e.max_rel !== undefined ? `, max rel ${fmt(e.max_rel)}` : "") : "—";
  }

  function findings(root, list, unexplained) {
    if (!list.length && !unexplained) return;
    root.append(el("h2", {}, "Findings"));
    for (const f of list) {
      const code = el("pre", {}, f.code || "");
      const copy = el("button", { class: "copy", onclick: () => copyText(f.code || "", copy) }, "copy");
      root.append(el("div", { class: "finding" + (f.verified ? "" : " unverified"), "data-cause": f.cause },
        el("h3", {}, `${f.cause} at ${f.layer} `, el("span", { class: "status " + (f.verified ? "s-match" : "s-propagated") },
          f.verified ? "proven" : "not proven")),
        el("div", {}, `before: ${errorSize(f.before)} → after: ${errorSize(f.after)}`),
        f.proven_together_with ? el("div", {}, `proven together with: ${f.proven_together_with.join(", ")}`) : null,
        f.explains && f.explains.length ? el("div", {}, `explains: ${f.explains.join(", ")}`) : null,
        el("p", {}, f.fix || ""), f.code ? el("div", {}, copy, code) : null));
    }
    if (unexplained) {
      root.append(el("div", { class: "finding unexplained" },
        el("h3", {}, `unexplained at ${unexplained.layer} (${unexplained.class || ""})`),
        el("div", {}, `alone on side A's inputs: ${errorSize(unexplained.isolated)}; its inputs' max rel ${fmt(unexplained.input_max_rel)}`),
        unexplained.reason ? el("p", {}, unexplained.reason) : null,
        (unexplained.worst || []).length ? el("div", {}, "worst: " + unexplained.worst.map((w) => `axis ${w.axis} index ${w.index} (${fmt(w.max_abs)})`).join("; ")) : null));
    }
  }

  function copyText(text, button) {
    const done = () => { button.textContent = "copied"; setTimeout(() => { button.textContent = "copy"; }, 1200); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
    } else fallbackCopy(text, done);
  }

  function fallbackCopy(text, done) {
    const area = el("textarea", {});
    area.value = text;
    document.body.append(area);
    area.select();
    try { document.execCommand("copy"); done(); } catch (e) { /* the code stays selectable */ }
    area.remove();
  }

  function curves(root, r) {
    const layers = (r.layers || []).filter((l) => l.max_abs !== null || l.grad);
    if (!layers.length) return;
    root.append(el("h2", {}, "Error by layer"));
    const grid = el("div", { class: "plots" });
    root.append(grid);
    const names = layers.map((l) => l.name);
    const x = layers.map((_, i) => i);
    const fixed = {};
    for (const l of (r.after_fixes ? r.after_fixes.layers : [])) fixed[l.name] = l;
    const iso = (l) => (l.isolated && l.isolated.max_rel !== undefined ? positive(l.isolated.max_rel) : null);
    const series = [{ label: "layer", value: (u, v) => (v === null ? "" : names[v]) },
      line("forward", "#c0392b"), line("alone (isolated)", "#8e44ad"), line("gradient", "#2471a3"),
      band("tolerance (rtol)", "#27ae60")];
    const data = [x, layers.map((l) => positive(l.max_rel)), layers.map(iso),
      layers.map((l) => (l.grad ? positive(l.grad.max_rel) : null)), layers.map((l) => (l.tolerance ? positive(l.tolerance.rtol) : null))];
    if (r.after_fixes) {
      series.push(line("after the fixes", "#16a085", { dash: [2, 3] }));
      data.push(layers.map((l) => (fixed[l.name] ? positive(fixed[l.name].max_rel) : null)));
    }
    plot(grid, "Max relative error", "log scale; a zero is drawn at 1e-12", { scales: logY, series: series,
      axes: [layerAxis(names), { values: (u, t) => t.map(fmt) }] }, data);
    const absSeries = [{ label: "layer", value: (u, v) => (v === null ? "" : names[v]) }, line("forward", "#c0392b"),
      line("alone (isolated)", "#8e44ad"), band("tolerance (atol)", "#27ae60")];
    const absData = [x, layers.map((l) => positive(l.max_abs)),
      layers.map((l) => (l.isolated && l.isolated.max_abs !== undefined ? positive(l.isolated.max_abs) : null)),
      layers.map((l) => (l.tolerance ? positive(l.tolerance.atol) : null))];
    if (r.after_fixes) {
      absSeries.push(line("after the fixes", "#16a085", { dash: [2, 3] }));
      absData.push(layers.map((l) => (fixed[l.name] ? positive(fixed[l.name].max_abs) : null)));
    }
    plot(grid, "Max absolute error", "log scale; a zero is drawn at 1e-12", { scales: logY, series: absSeries,
      axes: [layerAxis(names), { values: (u, t) => t.map(fmt) }] }, absData);
  }

  function picture(root, p) {
    if (!p) return;
    root.append(el("h2", {}, `The first divergence: ${p.layer}` + (p.b_layer !== p.layer ? ` (side B: ${p.b_layer})` : "")),
      el("p", { class: "sub" }, `output ${shape(p.shape)}; ${p.a_values.length} values drawn` +
        (p.non_finite ? `; ${p.non_finite} NaN/Inf left out` : "") + `; ${p.histogram.exact} equal on both sides`));
    const grid = el("div", { class: "plots" });
    root.append(grid);
    const pairs = p.a_values.map((a, i) => [num(a), num(p.b_values[i])]).sort((u, v) => u[0] - v[0]);
    plot(grid, "Side B against side A", "each point one value; on the line they agree", {
      scales: { x: { time: false }, y: {} },
      series: [{ label: "side A", value: (u, v) => fmt(v) },
        { label: "side B", stroke: "#c0392b", paths: () => null, points: { show: true, size: 4, fill: "#c0392b" }, value: (u, v) => fmt(v) },
        { label: "B = A", stroke: "#95a5a6", width: 1, points: { show: false } }],
      axes: [{ values: (u, t) => t.map(fmt) }, { values: (u, t) => t.map(fmt) }] },
    [pairs.map((q) => q[0]), pairs.map((q) => q[1]), pairs.map((q) => q[0])]);
    const edges = p.histogram.log10_edges.map(num);
    const centers = edges.slice(0, -1).map((e, i) => (e + edges[i + 1]) / 2);
    plot(grid, "Differences |A − B|", "how many elements differ by how much (log10 of |A − B|)", {
      scales: { x: { time: false }, y: {} },
      series: [{ label: "log10 |A − B|", value: (u, v) => fmt(v) },
        { label: "elements", stroke: "#2471a3", fill: "#2471a366", paths: uPlot.paths.bars({ size: [0.9, 60] }), points: { show: false } }],
      axes: [{ values: (u, t) => t.map((v) => "1e" + Math.round(v * 10) / 10) }, {}] }, [centers, p.histogram.counts]);
    for (const axis of p.axes || []) {
      const values = axis.max_abs.map(positive);
      plot(grid, `Where along axis ${axis.axis} (length ${axis.length})`,
        "max |A − B| over every other axis, at each index" + (axis.bucket > 1 ? ` (each point ${axis.bucket} indices)` : ""), {
          scales: logY, series: [{ label: "index", value: (u, v) => String(v * axis.bucket) }, line("max |A − B|", "#c0392b")],
          axes: [{ values: (u, t) => t.map((v) => String(v * axis.bucket)) }, { values: (u, t) => t.map(fmt) }] },
        [values.map((_, i) => i), values]);
    }
  }

  function layerTable(root, layers, first) {
    if (!layers.length) return;
    root.append(el("h2", {}, "Layers"));
    const statuses = [...new Set(layers.map((l) => l.status))];
    const nameFilter = el("input", { type: "search", placeholder: "filter by name or class", id: "name-filter" });
    const statusFilter = el("select", { id: "status-filter" }, el("option", { value: "" }, "every status"),
      statuses.map((s) => el("option", { value: s }, s)));
    root.append(el("div", { class: "filters" }, nameFilter, statusFilter));
    const body = el("tbody", {});
    const table = el("table", { class: "layers", id: "layers" }, el("thead", {}, el("tr", {},
      ["#", "layer", "class", "shape", "max abs", "max rel", "grad rel", "status"].map((h, i) =>
        el("th", { class: i === 1 ? "name" : i === 2 ? "cls" : "" }, h)))), body);
    root.append(table);
    layers.forEach((l, i) => {
      const row = el("tr", { class: "layer" + (l.name === first ? " first" : ""), "data-status": l.status,
        "data-name": (l.name + " " + l.class + " " + (l.b_name || "")).toLowerCase() },
      el("td", {}, i), el("td", { class: "name" }, l.name + (l.b_name && l.b_name !== l.name ? ` ↔ ${l.b_name}` : "") +
        [["A", l.a_members], ["B", l.b_members]].filter((g) => g[1] && g[1].length).map((g) => ` [${g[0]}: ${g[1].join(" + ")}]`).join("")),
      el("td", { class: "cls" }, l.class), el("td", {}, shape(l.a_shape)), el("td", {}, fmt(l.max_abs)),
      el("td", {}, fmt(l.max_rel)), el("td", {}, l.grad ? fmt(l.grad.max_rel) : ""),
      el("td", {}, el("span", { class: "status s-" + l.status }, l.status + (l.name === first ? " ◀ first" : ""))));
      const detail = el("tr", { class: "detail", hidden: "" }, el("td", { colspan: "8" }, layerDetail(l)));
      row.addEventListener("click", () => { detail.hidden = !detail.hidden; });
      body.append(row, detail);
    });
    const apply = () => {
      const text = nameFilter.value.trim().toLowerCase();
      const status = statusFilter.value;
      for (const row of body.querySelectorAll("tr.layer")) {
        const shown = (!text || row.dataset.name.includes(text)) && (!status || row.dataset.status === status);
        row.hidden = !shown;
        if (!shown) row.nextSibling.hidden = true;
      }
    };
    nameFilter.addEventListener("input", apply);
    statusFilter.addEventListener("change", apply);
  }

  function metricsText(m) {
    if (!m) return "—";
    if (m.note) return m.note;
    return `max abs ${fmt(m.max_abs)}, max rel ${fmt(m.max_rel)}, cosine ${fmt(m.cosine)}` + (m.match === false ? " (out of tolerance)" : "");
  }

  function layerDetail(l) {
    const rows = [];
    const add = (term, text) => { if (text) rows.push(el("dt", {}, term), el("dd", {}, text)); };
    add("tolerance", l.tolerance ? `atol ${fmt(l.tolerance.atol)}, rtol ${fmt(l.tolerance.rtol)}` + (l.tolerance.reason ? ` — ${l.tolerance.reason}` : "") : "");
    add("outputs", `side A ${shape(l.a_shape)}, side B ${shape(l.b_shape)}` + (l.layout ? `; ${l.layout}` : ""));
    add("forward", l.max_abs !== null ? metricsText(l) + (l.out_of_tolerance ? `; ${(100 * l.out_of_tolerance).toPrecision(3)}% of elements out of tolerance` : "") : "");
    if (l.nan && (l.nan.a || l.nan.b)) add("NaN", `side A ${l.nan.a}, side B ${l.nan.b}`);
    add("alone (isolated)", l.isolated ? metricsText(l.isolated) : "");
    add("output gradient", l.grad ? metricsText(l.grad) : "");
    for (const [name, m] of Object.entries(l.weight_grads || {})) add(`gradient of ${name}`, metricsText(m));
    if (l.grad_alone) add("backward alone", l.grad_alone.note || (l.grad_alone.match
      ? "matches on side A's values: the gradients differ only by what the forward pass carries"
      : `differs on side A's values: inputs ${metricsText(l.grad_alone.inputs)}`));
    add("paired by", l.aligned_by || "");
    add("note", l.note || "");
    return el("dl", {}, rows);
  }

  // ---- kdiff train ----------------------------------------------------------------------------
  function trainReport(root, r) {
    const agree = !r.first_divergence && !(r.findings || []).length && !r.forward_divergence;
    verdict(root, agree, agree ? `The weight updates agree at every one of ${r.steps.length} steps.`
      : r.first_divergence ? `The updates first differ at step ${r.first_divergence.step}, weight '${r.first_divergence.weight}'.`
        : "The two sides differ before training (see the findings).");
    sides(root, r.backends);
    root.append(el("p", { class: "sub" }, `loss ${r.loss}, batch size ${r.batch_size}; optimizers: ` +
      ["a", "b"].map((s) => r.optimizers && r.optimizers[s] ? `${s.toUpperCase()} ${r.optimizers[s].optimizer}` : "").filter(Boolean).join(", ")));
    findings(root, r.findings || [], null);
    if (r.forward_divergence) listOf(root, "Forward divergence before training", [JSON.stringify(r.forward_divergence)], "warn");
    if (r.steps.length) {
      root.append(el("h2", {}, "Steps"));
      const grid = el("div", { class: "plots" });
      root.append(grid);
      const x = r.steps.map((s) => s.step);
      plot(grid, "Loss per step", "both sides, on the same batches", { scales: { x: { time: false }, y: {} },
        series: [{ label: "step" }, line("side A", "#2471a3"), line("side B", "#c0392b", { dash: [4, 3] })],
        axes: [whole, { values: (u, t) => t.map(fmt) }] }, [x, r.steps.map((s) => num(s.loss_a)), r.steps.map((s) => num(s.loss_b))]);
      plot(grid, "Worst update error per step", "max relative difference of the paired weight updating most otherwise (log scale)", {
        scales: logY, series: [{ label: "step" }, line("worst update (max rel)", "#8e44ad")],
        axes: [whole, { values: (u, t) => t.map(fmt) }] }, [x, r.steps.map((s) => (s.worst_update ? positive(s.worst_update.max_rel) : null))]);
    }
    const layers = r.divergence_layers || [];
    if (layers.length) {
      root.append(el("h2", {}, `Layers at step ${r.first_divergence ? r.first_divergence.step : ""}`));
      const body = el("tbody", {});
      root.append(el("table", { class: "layers wrap" }, el("thead", {}, el("tr", {},
        ["layer", "class", "activation", "gradient", "weights"].map((h) => el("th", { class: "name" }, h)))), body));
      for (const l of layers) {
        body.append(el("tr", {}, el("td", { class: "name" }, l.name), el("td", { class: "cls" }, l.class),
          el("td", { class: "name" }, metricsText(l.activation)), el("td", { class: "name" }, metricsText(l.gradient)),
          el("td", { class: "name" }, Object.entries(l.weights || {}).map(([w, parts]) =>
            el("div", {}, `${w}: ` + Object.entries(parts).map(([k, m]) => `${k} ${m && m.match === false ? "✗" : "✓"} ${m ? fmt(m.max_rel) : ""}`).join(", "))))));
      }
    }
    listOf(root, "Notes", r.notes || []);
  }

  // ---- kdiff attach ---------------------------------------------------------------------------
  function attachReport(root, r) {
    diffReport(root, r);
    const runs = r.live || [];
    if (!runs.length) return;
    const heading = el("h2", {}, "The followed runs");
    root.insertBefore(heading, root.querySelector("h2"));
    const grid = el("div", { class: "plots" });
    heading.after(grid);
    const steps = [...new Set(runs.flatMap((run) => (run.losses || []).map((p) => p[0])))].sort((u, v) => u - v);
    if (steps.length) {
      const colors = ["#2471a3", "#c0392b", "#27ae60", "#8e44ad"];
      const series = [{ label: "step" }].concat(runs.map((run, i) => line(run.label, colors[i % colors.length], { spanGaps: true })));
      const data = [steps].concat(runs.map((run) => {
        const at = new Map((run.losses || []).map((p) => [p[0], num(p[1])]));
        return steps.map((s) => (at.has(s) ? at.get(s) : null));
      }));
      plot(grid, "Live loss of the followed runs", runs.map((run) => `${run.label} (${run.endpoint}) snapshot at step ${run.step}`).join("; "),
        { scales: { x: { time: false }, y: {} }, series: series, axes: [whole, { values: (u, t) => t.map(fmt) }] }, data);
    } else {
      grid.append(el("p", { class: "sub" }, runs.map((run) => `${run.label}: loss ${fmt(run.loss)} at step ${run.step}`).join("; ")));
    }
  }

  function drawnCount() {
    let drawn = 0;
    for (const made of plots) {
      const canvas = made.ctx.canvas;
      const pixels = made.ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let inked = 0;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
      if (inked > 50) drawn++;
    }
    return drawn;
  }

  function main() {
    const root = document.getElementById("report");
    try {
      const r = JSON.parse(document.getElementById("kdiff-report").textContent);
      document.title = document.title || "kdiff report";
      if (Array.isArray(r.steps)) trainReport(root, r);
      else if (Array.isArray(r.live)) attachReport(root, r);
      else diffReport(root, r);
    } catch (e) {
      errors.push(String(e && e.stack || e));
      root.append(el("pre", {}, "kdiff: the report could not be drawn: " + e));
    }
    setTimeout(() => {
      try { document.body.dataset.drawn = String(drawnCount()); } catch (e) { errors.push(String(e)); }
      document.body.dataset.plots = String(plots.length);
      document.body.dataset.errors = JSON.stringify(errors);
      document.body.dataset.rendered = "yes";
    }, 100);
  }

  main();
})();
