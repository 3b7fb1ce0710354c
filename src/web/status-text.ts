// `actiond status`: the snapshot as one screen of text, for a terminal, a script or an SSH session.
import { formatMiB, type VmState } from "../core";
import type { StatusSnapshot } from "./snapshot";

export function formatStatus(s: StatusSnapshot): string {
  const c = s.cache;
  const lookups = c.acHits + c.acMisses;
  const running = s.executions.filter((e) => e.stage === "EXECUTING");
  const queued = s.executions.filter((e) => e.stage === "QUEUED");
  const lines = [
    `actiond ${s.version}, up ${Math.round(s.uptimeSeconds)} s (since ${s.startedAt}), root ${s.worker.root}`,
    `worker: sandbox ${s.worker.sandbox}, ${s.worker.jobs} jobs, runtimes ${s.worker.runtimes.join(", ") || "none"}, cgroup limits ${s.worker.cgroups}`,
    `actions: ${running.length} running, ${queued.length} queued, ${s.executed} executed since start`,
    ...running.slice(0, 10).map((e) => `  running ${e.action} for ${e.elapsedSeconds.toFixed(1)} s`),
    `cache: ${c.acHits} hits, ${c.acMisses} misses${lookups > 0 ? ` (${Math.round((100 * c.acHits) / lookups)}% hits)` : ""}, ${c.acUpdates} updates; ` +
      `blobs ${c.blobsStored} stored (${formatMiB(c.bytesStored)}), ${c.blobsRead} read (${formatMiB(c.bytesRead)})`,
    `store: ${formatMiB(c.storedBytes)} of ${formatMiB(c.maxBytes)} in ${c.storedFiles} files, ${c.evictions} evicted`,
  ];
  const d = s.sharedInputDirs;
  if (d) lines.push(`shared input directories: ${d.entries} held (${d.nodes} entries, ${formatMiB(d.bytes)}), ${d.laidOut} laid out, ${d.mounted} mounted into actions`);
  if (s.phases) lines.push(`phases, ms p50/p95: ${Object.entries(s.phases).map(([k, v]) => `${k.replace(/Ms$/, "")} ${v.p50.toFixed(1)}/${v.p95.toFixed(1)}`).join(", ")}`);
  if (s.upstream) {
    const u = s.upstream.counts;
    lines.push(`upstream ${s.upstream.address}: ${s.upstream.up ? "up" : "DOWN"}, ${u.resultHits ?? 0} hits, ${u.blobsFetched ?? 0} blobs fetched, ${s.upstream.queued} pushes queued, ${u.corrupt ?? 0} corrupt`);
  }
  return lines.join("\n") + "\n";
}

/** serve-vm's guest, as its host tells it; the console's last lines while it is not ready. */
export function formatVm(v: VmState): string {
  const lines = [
    `vm guest: ${v.state} since ${v.since}, ${v.how || "starting"}, ${v.cpus} CPUs, ${v.memoryMib} MiB; ${v.boots} boots, ${v.restarts} restarts` +
      `${v.readySeconds === undefined ? "" : `, ready in ${v.readySeconds.toFixed(1)} s`}${v.waiting > 0 ? `; ${v.waiting} connections waiting` : ""}`,
  ];
  if (v.state !== "ready") lines.push(`its console (${v.console}), last lines:`, ...v.consoleTail.map((l) => `  ${l}`));
  return lines.join("\n") + "\n";
}
