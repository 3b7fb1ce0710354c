// The status page: one small HTML document, no build step, that asks /api/status every second and
// draws it. Everything it shows comes from the snapshot; text is set with textContent, never as HTML
// (a target label is whatever the client sent).
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>actiond</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; } h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
  .muted { color: #777; } .bad { color: #b00; } .good { color: #070; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: .25em .6em; border-bottom: 1px solid #eee; vertical-align: top; }
  th { font-weight: 600; background: #f0f0f0; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .cards { display: flex; flex-wrap: wrap; gap: .8em; }
  .card { background: #fff; border: 1px solid #e5e5e5; border-radius: 6px; padding: .6em .9em; min-width: 10em; }
  .card b { display: block; font-size: 1.35em; }
  code { font-size: .9em; }
  pre.console { font: 12px/1.3 ui-monospace, monospace; background: #fff; border: 1px solid #e5e5e5; padding: .5em; max-height: 16em; overflow: auto; white-space: pre-wrap; }
  td.tail { font: 12px/1.3 ui-monospace, monospace; white-space: pre-wrap; max-width: 40em; color: #333; }
</style>
</head>
<body>
<h1>actiond <span id="version" class="muted"></span></h1>
<div id="worker" class="muted">connecting…</div>
<div id="vm" hidden>
<h2>VM guest</h2>
<div class="cards">
  <div class="card"><b id="vm-state">–</b>state</div>
  <div class="card"><b id="vm-boots">–</b>boots</div>
  <div class="card"><b id="vm-restarts">–</b>restarts</div>
  <div class="card"><b id="vm-ready">–</b>boot to ready</div>
  <div class="card"><b id="vm-waiting">–</b>connections waiting</div>
</div>
<div id="vm-how" class="muted"></div>
<pre id="vm-console" class="console"></pre>
</div>
<h2>Now</h2>
<div class="cards">
  <div class="card"><b id="running-count">–</b>running</div>
  <div class="card"><b id="queued-count">–</b>queued</div>
  <div class="card"><b id="jobs">–</b>jobs at once</div>
  <div class="card"><b id="executed">–</b>executed since start</div>
</div>
<table id="running"><thead><tr><th>target</th><th>mnemonic</th><th>runs</th><th>runtime</th><th>action</th><th>for</th><th>output, last lines</th></tr></thead><tbody></tbody></table>
<h2>Cache</h2>
<div class="cards">
  <div class="card"><b id="hits">–</b>hits since start</div>
  <div class="card"><b id="misses">–</b>misses since start</div>
  <div class="card"><b id="hit-rate-build">–</b>hit rate, latest build</div>
  <div class="card"><b id="store">–</b>store (of <span id="store-max"></span>)</div>
  <div class="card"><b id="evictions">–</b>evicted</div>
  <div class="card"><b id="bytes-in">–</b>uploaded</div>
  <div class="card"><b id="bytes-out">–</b>downloaded</div>
</div>
<div id="upstream" class="muted"></div>
<h2>Recent actions</h2>
<table id="recent"><thead><tr><th>at</th><th>target</th><th>mnemonic</th><th>outcome</th><th>exit</th><th>ms</th><th>phases (ms)</th><th>why it missed</th><th>stderr (failures)</th></tr></thead><tbody></tbody></table>
<p class="muted">Also: <a href="/api/status">/api/status</a> (JSON), <a href="/metrics">/metrics</a> (Prometheus).</p>
<script>
const $ = (id) => document.getElementById(id);
const mib = (b) => (b / 1048576).toFixed(1) + " MiB";
const text = (el, s) => { el.textContent = s; return el; };
function row(cells, attrs) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
  for (const c of cells) {
    const td = document.createElement("td");
    if (typeof c === "object" && c) { td.className = c.cls || ""; td.textContent = c.text; } else td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}
function fill(table, rows, empty) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (rows.length > 0) return;
  const none = row([{ text: empty, cls: "muted" }]);
  none.firstChild.colSpan = table.tHead.rows[0].cells.length;
  body.appendChild(none);
}
function draw(s) {
  text($("version"), s.version + ", up " + Math.round(s.uptimeSeconds) + " s");
  text($("worker"), "sandbox " + s.worker.sandbox + " · runtimes " + (s.worker.runtimes.join(", ") || "none") + " · cgroup limits " + s.worker.cgroups + " · root " + s.worker.root);
  $("worker").title = "bounded: " + s.worker.limits.join("; ") + (s.worker.unbounded.length ? "\\nnot bounded here: " + s.worker.unbounded.join("; ") : "");
  const running = s.executions.filter((e) => e.stage === "EXECUTING");
  text($("running-count"), running.length);
  text($("queued-count"), s.executions.filter((e) => e.stage === "QUEUED").length);
  text($("jobs"), s.worker.jobs);
  text($("executed"), s.executed);
  const tail = (t) => t ? (t.stdout + (t.stderr ? (t.stdout && !t.stdout.endsWith("\\n") ? "\\n" : "") + t.stderr : "")).split("\\n").slice(-6).join("\\n") : "";
  fill($("running"), running.map((e) => row([e.target || "(no target)", e.mnemonic, { text: e.argv0, cls: "muted" }, e.runtime, { text: e.action.slice(0, 16) + "…", cls: "muted" }, { text: e.elapsedSeconds.toFixed(1) + " s", cls: "num" }, { text: tail(e.tail), cls: "tail" }], { "data-target": e.target })), "nothing running");
  const c = s.cache;
  text($("hits"), c.acHits);
  text($("misses"), c.acMisses);
  const build = s.invocations[0];
  text($("hit-rate-build"), build && build.hits + build.misses > 0 ? Math.round((100 * build.hits) / (build.hits + build.misses)) + "%" : "–");
  text($("store"), mib(c.storedBytes));
  text($("store-max"), mib(c.maxBytes));
  text($("evictions"), c.evictions);
  text($("bytes-in"), mib(c.bytesStored));
  text($("bytes-out"), mib(c.bytesRead));
  const u = s.upstream;
  text($("upstream"), u ? "upstream " + u.address + ": " + (u.up ? "up" : "DOWN") + " · " + (u.counts.resultHits || 0) + " hits · " + (u.counts.blobsFetched || 0) + " blobs fetched · " + u.queued + " pushes queued" : "");
  fill($("recent"), s.recent.slice(0, 200).map((r) => row([
    new Date(r.at).toLocaleTimeString(), r.target || "(no target)", r.mnemonic,
    { text: r.outcome, cls: r.outcome === "failed" ? "bad" : r.outcome === "hit" ? "good" : "" },
    r.exitCode === undefined ? "" : r.exitCode, { text: r.durationMs === undefined ? "" : Math.round(r.durationMs), cls: "num" },
    r.phases ? Object.entries(r.phases).map(([k, v]) => k + " " + Math.round(v)).join(", ") + (r.message ? " — " + r.message : "") : "",
    { text: r.why || "", cls: "muted" },
    { text: r.stderr ? r.stderr.split("\\n").slice(-8).join("\\n") : "", cls: "tail bad" },
  ], { "data-outcome": r.outcome })), "no actions yet");
}
function drawVm(v) {
  $("vm").hidden = false;
  text($("vm-state"), v.state);
  text($("vm-boots"), v.boots);
  text($("vm-restarts"), v.restarts);
  text($("vm-ready"), v.readySeconds === undefined ? "–" : v.readySeconds.toFixed(1) + " s");
  text($("vm-waiting"), v.waiting);
  text($("vm-how"), (v.how || "starting") + " · " + v.cpus + " CPUs · " + v.memoryMib + " MiB · " + v.state + " since " + new Date(v.since).toLocaleTimeString() + " · console " + v.console);
  text($("vm-console"), v.consoleTail.join("\\n"));
}
async function tick() {
  // Under serve-vm the host answers /api/vm (elsewhere it is not there), even while the guest boots.
  try {
    const vm = await fetch("/api/vm", { cache: "no-store" });
    if (vm.ok) drawVm(await vm.json());
  } catch {}
  try {
    const res = await fetch("/api/status", { cache: "no-store" });
    const body = await res.json();
    if (res.ok) draw(body); else text($("worker"), body.error || "HTTP " + res.status);
  } catch (err) {
    text($("worker"), "not answering: " + err);
  }
  setTimeout(tick, 1000);
}
tick();
</script>
</body>
</html>
`;

/** The page, with a policy that lets only its own script and styles run. */
export function pageResponse(): Response {
  return new Response(STATUS_PAGE, {
    headers: { "content-type": "text/html; charset=utf-8", "content-security-policy": "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'" },
  });
}
