// flowfabric-worker dashboard: live updates over server-sent events.
// Everything from the server is inserted as text (textContent, createElement):
// never as HTML, since outputs and names are untrusted.
"use strict";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function setLive(id, on) {
  const badge = document.getElementById(id);
  if (badge) badge.classList.toggle("off", !on);
}

function execPath(id) {
  return document.body.dataset.root + "/executions/" + encodeURIComponent(id);
}

const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// Finished per minute: completed (green) with failed (red) stacked on top.
function drawBars(svg, completed, failed) {
  const peak = Math.max(1, ...completed.map((c, i) => c + failed[i]));
  svg.replaceChildren(...completed.map((c, i) => {
    const f = failed[i];
    const hc = 48 * c / peak, hf = 48 * f / peak, x = i * 34;
    const g = svgEl("g", {});
    g.append(svgEl("title", {}, c + " completed, " + f + " failed (" + (completed.length - i) + " min ago)"),
             svgEl("rect", { class: "bar-ok", x: x, y: 50 - hc, width: 28, height: hc }),
             svgEl("rect", { class: "bar-bad", x: x, y: 50 - hc - hf, width: 28, height: hf }),
             svgEl("text", { x: x + 14, y: 62, "text-anchor": "middle" }, c + f));
    return g;
  }));
}

// --- overview -----------------------------------------------------------------
function overview() {
  const source = new EventSource(document.body.dataset.root + "/events/overview");
  source.onopen = () => setLive("live", true);
  source.onerror = () => setLive("live", false);
  source.addEventListener("snapshot", (e) => {
    const data = JSON.parse(e.data);
    const lanes = document.querySelector("#lanes tbody");
    lanes.replaceChildren(...data.lanes.map((l) => {
      const tr = el("tr");
      const a = el("a", l.lane);
      a.href = document.body.dataset.root + "/executions?lane=" + encodeURIComponent(l.lane);
      const td = el("td"); td.append(a); tr.append(td);
      for (const k of ["waiting", "delayed", "active", "suspended", "blocked", "finished"]) {
        tr.append(el("td", l[k]));
      }
      return tr;
    }));
    const workers = document.querySelector("#workers tbody");
    const rows = data.workers.map((w) => {
      const tr = el("tr");
      tr.append(el("td", w.worker_id), el("td", ""), el("td", w.lanes), el("td", w.in_flight),
                el("td", w.heartbeat_age_s + " s ago"));
      tr.children[1].append(el("code", w.instance_id));
      return tr;
    });
    if (!rows.length) { const tr = el("tr"); const td = el("td", "no live worker", "muted"); td.colSpan = 5; tr.append(td); rows.push(tr); }
    workers.replaceChildren(...rows);
    const t = data.throughput;
    const sum = (xs) => xs.reduce((a, b) => a + b, 0);
    document.getElementById("t-completed").textContent = sum(t.completed);
    document.getElementById("t-failed").textContent = sum(t.failed);
    document.getElementById("t-rate").textContent = t.failure_rate;
    drawBars(document.getElementById("bars"), t.completed, t.failed);
  });
}

// --- one execution ----------------------------------------------------------------
function execution() {
  const out = document.getElementById("output");
  const stateBadge = document.getElementById("state");
  const initial = stateBadge.textContent;
  let attempt = null;
  const source = new EventSource(out.dataset.events);
  source.onopen = () => setLive("output-live", true);
  source.addEventListener("frame", (e) => {
    const f = JSON.parse(e.data);
    if (attempt !== null && f.attempt !== attempt) out.append(el("span", "\n— attempt " + f.attempt + " —\n", "attempt-mark"));
    attempt = f.attempt;
    out.append(el("span", f.text, "frame frame-" + f.type));
    out.scrollTop = out.scrollHeight;
  });
  source.addEventListener("state", (e) => {
    const s = JSON.parse(e.data);
    stateBadge.textContent = s.state;
    stateBadge.className = "badge state-" + s.state;
    const progress = document.getElementById("progress");
    if (progress) progress.textContent = (s.progress_pct ? s.progress_pct + "% " : "") + (s.progress_message || (s.progress_pct ? "" : "-"));
    if (s.state !== initial) document.getElementById("stale").hidden = false;
  });
  source.addEventListener("end", () => { source.close(); setLive("output-live", false); });
  source.onerror = () => setLive("output-live", false);

  // Check the payload is JSON before sending (the server checks again).
  const form = document.getElementById("signal-form");
  if (form) {
    form.addEventListener("submit", (ev) => {
      const text = form.elements.payload.value.trim();
      const hint = document.getElementById("payload-error");
      if (!text) return;
      try { JSON.parse(text); hint.hidden = true; } catch (err) {
        ev.preventDefault();
        hint.textContent = "Not valid JSON: " + err.message;
        hint.hidden = false;
      }
    });
  }
}

// --- one flow ------------------------------------------------------------------------
function flow() {
  const graph = document.getElementById("graph");
  const source = new EventSource(graph.dataset.events);
  let refreshing = false;
  async function redraw() {
    if (refreshing) return;
    refreshing = true;
    try {
      const response = await fetch(graph.dataset.svg, { credentials: "same-origin" });
      if (response.ok) {
        // Our own server's SVG, every text in it escaped there; parsed as XML.
        const doc = new DOMParser().parseFromString(await response.text(), "image/svg+xml");
        const svg = doc.documentElement;
        if (svg && svg.nodeName === "svg") {
          const old = document.getElementById("dag");
          old.replaceWith(document.importNode(svg, true));
        }
      }
    } finally { refreshing = false; }
  }
  source.addEventListener("snapshot", (e) => {
    const s = JSON.parse(e.data);
    const badge = document.getElementById("flow-state");
    badge.textContent = s.state; badge.className = "badge state-" + s.state;
    document.getElementById("member-count").textContent = Object.keys(s.members).length;
    document.getElementById("counts").textContent = Object.entries(s.counts).sort()
      .map(([k, v]) => v + " " + k).join(", ");
    let missing = false;
    for (const [id, state] of Object.entries(s.members)) {
      const link = document.querySelector('a[data-member="' + CSS.escape(id) + '"]');
      if (!link) { missing = true; continue; }
      link.querySelector("rect").setAttribute("class", "node state-" + state);
      link.querySelector(".node-state").textContent = state;
    }
    if (missing) redraw();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "overview") overview();
  else if (page === "execution") execution();
  else if (page === "flow") flow();
});
