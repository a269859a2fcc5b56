// Draws a load test's live figures, criteria and charts from its view (the JSON embedded in
// the page, then the page's JSON API every few seconds while the run is live). When the run
// ends the page reloads once: the server renders the report's tables.
(() => {
  const POLL_MS = 3000;
  const SVG = "http://www.w3.org/2000/svg";
  const W = 560, H = 180, L = 52, R = 12, T = 12, B = 26;
  const CHARTS = {
    throughput: [["rps", "requests/s", "s1"], ["errorsPerSecond", "errors/s", "s4"]],
    latency: [["p50Ms", "p50", "s2"], ["p95Ms", "p95", "s1"], ["p99Ms", "p99", "s3"]],
    users: [["activeUsers", "users", "s2"]],
  };
  const el = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const nice = (v) => {
    if (v <= 1) return 1;
    const m = 10 ** Math.floor(Math.log10(v));
    for (const s of [1, 2, 5, 10]) if (v <= s * m) return s * m;
    return 10 * m;
  };
  const fmt = (v, digits = 0) => (typeof v === "number" ? v.toLocaleString("en", { maximumFractionDigits: digits }) : "–");

  const draw = (svg, series, lines) => {
    svg.replaceChildren();
    svg.dataset.points = String(series.length);
    const values = series.flatMap((p) => lines.map(([k]) => p[k]).filter((v) => typeof v === "number"));
    if (!values.length) {
      svg.append(el("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" }, "no figures yet"));
      return;
    }
    const top = nice(Math.max(...values) * 1.1);
    const t0 = series[0].t, t1 = series[series.length - 1].t, span = t1 - t0 || 1;
    const x = (t) => L + ((t - t0) / span) * (W - L - R);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    for (const f of [0, 0.5, 1]) {
      svg.append(el("line", { class: "grid", x1: L, x2: W - R, y1: y(top * f), y2: y(top * f) }));
      svg.append(el("text", { class: "axis", x: L - 6, y: y(top * f) + 4, "text-anchor": "end" }, fmt(top * f, 1)));
    }
    svg.append(el("text", { class: "axis", x: L, y: H - 8 }, `${fmt(t0)} s`));
    svg.append(el("text", { class: "axis", x: W - R, y: H - 8, "text-anchor": "end" }, `${fmt(t1)} s`));
    lines.forEach(([key, label, cls], i) => {
      const pts = series.filter((p) => typeof p[key] === "number").map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`);
      if (pts.length > 1) svg.append(el("polyline", { class: `line ${cls}`, points: pts.join(" ") }));
      else if (pts.length === 1) {
        const [cx, cy] = pts[0].split(",");
        svg.append(el("circle", { class: `dot ${cls}`, cx, cy, r: 3 }));
      }
      svg.append(el("text", { class: `legend ${cls}`, x: L + 8 + i * 90, y: T + 10 }, label));
    });
  };

  const figures = (view) => {
    const last = view.latest || {};
    const items = view.live
      ? [["Requests", fmt(last.requests)], ["Errors", fmt(last.errors)], ["Requests/s", fmt(last.rps, 1)],
         ["Errors/s", fmt(last.errorsPerSecond, 1)], ["p50", `${fmt(last.p50Ms, 1)} ms`], ["p95", `${fmt(last.p95Ms, 1)} ms`],
         ["p99", `${fmt(last.p99Ms, 1)} ms`], ["Active users", fmt(last.activeUsers)]]
      : [];
    const box = document.getElementById("figures");
    box.replaceChildren(...items.map(([title, value]) => {
      const div = document.createElement("div");
      div.className = "figure";
      const span = document.createElement("span");
      span.textContent = title;
      const strong = document.createElement("strong");
      strong.textContent = value;
      div.append(span, strong);
      return div;
    }));
  };

  const criteria = (view) => {
    const box = document.getElementById("criteria-table");
    if (!view.criteria.length) {
      box.innerHTML = '<p class="empty">No criteria: the run passes unless it is aborted.</p>';
      return;
    }
    const table = document.createElement("table");
    table.innerHTML = '<thead><tr><th scope="col">Criterion</th><th scope="col">Observed</th>' +
      '<th scope="col">Headroom</th><th scope="col">State</th></tr></thead><tbody></tbody>';
    for (const c of view.criteria) {
      const row = table.tBodies[0].insertRow();
      const state = c.passing === null ? "not measured yet" : c.passing ? "passing" : "failing";
      const room = c.headroom === null ? "–" : `${fmt(c.headroom, 2)}${c.headroomPct === null ? "" : ` (${fmt(c.headroomPct, 1)} %)`}`;
      for (const [text, cls] of [[c.criterion, ""], [fmt(c.observed, 2), "num"], [room, "num"], [state, `verdict ${c.passing === false ? "bad" : c.passing ? "ok" : ""}`]]) {
        const cell = row.insertCell();
        cell.textContent = text;
        if (cls) cell.className = cls;
      }
    }
    box.replaceChildren(table);
  };

  const render = (view) => {
    document.getElementById("source").textContent = view.seriesSource === "report"
      ? "(per second, from the report)" : view.live ? "(live, every few seconds)" : "(as sampled while it ran)";
    figures(view);
    criteria(view);
    for (const [key, lines] of Object.entries(CHARTS)) draw(document.getElementById(`chart-${key}`), view.series, lines);
  };

  // Watch while the run is live, and after it ends until its report is in (the server says
  // how long that is worth waiting for); then reload once for the report's tables.
  const watching = (v) => v.live || v.awaitingReport;
  let view = JSON.parse(document.getElementById("loadtest-data").textContent);
  render(view);
  if (!watching(view)) return;
  const timer = setInterval(async () => {
    try {
      const answer = await fetch(document.body.dataset.api, { credentials: "same-origin" });
      if (answer.status === 401) { window.location.assign("/dashboard/login"); return; }
      if (!answer.ok) return;
      view = await answer.json();
      render(view);
      if (!watching(view)) { clearInterval(timer); window.location.reload(); }
    } catch (error) {
      // the gateway restarting or the network gone: try again at the next interval
    }
  }, POLL_MS);
})();
