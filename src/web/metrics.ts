// /metrics: the snapshot in Prometheus's text format, through prom-client. Counters and gauges are
// read from the snapshot at each scrape; the phase histograms are fed as actions finish.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { StatusSnapshot, StatusSource } from "./snapshot";

/** Seconds: from a trivial action's milliseconds to an hour-long build step. */
const PHASE_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600];

export interface StatusMetrics {
  readonly contentType: string;
  text(): Promise<string>;
}

export function statusMetrics(source: StatusSource): StatusMetrics {
  const registry = new Registry();
  const registers = [registry];
  // Each scrape reads one snapshot (in text(), before collecting); every metric's collect() uses it.
  let snap: StatusSnapshot = undefined!;
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name, help, registers, collect() {
      this.set(read());
    } });
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({ name, help, registers, collect() {
      this.reset();
      this.inc(read());
    } });
  new Counter({
    name: "actiond_grpc_calls_total",
    help: "Finished gRPC calls by method and status code.",
    labelNames: ["method", "code"],
    registers,
    collect() {
      this.reset();
      for (const c of snap.calls) this.inc({ method: c.method, code: c.code }, c.n);
    },
  });
  counter("actiond_action_cache_hits_total", "GetActionResult hits.", () => snap.cache.acHits);
  counter("actiond_action_cache_misses_total", "GetActionResult misses.", () => snap.cache.acMisses);
  counter("actiond_action_cache_updates_total", "UpdateActionResult calls stored.", () => snap.cache.acUpdates);
  counter("actiond_cas_blobs_stored_total", "Blobs uploaded by clients.", () => snap.cache.blobsStored);
  counter("actiond_cas_bytes_stored_total", "Bytes of blobs uploaded by clients.", () => snap.cache.bytesStored);
  counter("actiond_cas_blobs_read_total", "Blobs read by clients.", () => snap.cache.blobsRead);
  counter("actiond_cas_bytes_read_total", "Bytes of blobs read by clients.", () => snap.cache.bytesRead);
  counter("actiond_store_evictions_total", "Files evicted from the store for room.", () => snap.cache.evictions);
  gauge("actiond_store_bytes", "Bytes the store holds on disk (blobs and action results).", () => snap.cache.storedBytes);
  gauge("actiond_store_max_bytes", "The store's budget (--max-cas-size).", () => snap.cache.maxBytes);
  gauge("actiond_store_files", "Files the store holds.", () => snap.cache.storedFiles);
  counter("actiond_actions_executed_total", "Actions executed.", () => snap.executed);
  new Counter({
    name: "actiond_actions_failed_total",
    help: "Executions that did not end with a result, by gRPC code (INTERNAL: the sandbox failed; DEADLINE_EXCEEDED: timed out; CANCELLED).",
    labelNames: ["code"],
    registers,
    collect() {
      this.reset();
      for (const [code, n] of Object.entries(snap.failures)) this.inc({ code }, n);
    },
  });
  gauge("actiond_shared_input_dirs", "Input directories laid out once and shared between actions, held now.", () => snap.sharedInputDirs?.entries ?? 0);
  gauge("actiond_shared_input_dir_entries", "Files, directories and symlinks the shared input directories hold.", () => snap.sharedInputDirs?.nodes ?? 0);
  counter("actiond_shared_input_dirs_laid_out_total", "Shared input directories laid out (on a directory's second sighting).", () => snap.sharedInputDirs?.laidOut ?? 0);
  counter("actiond_shared_input_dirs_mounted_total", "Shared input directories mounted into actions instead of linked file by file.", () => snap.sharedInputDirs?.mounted ?? 0);
  gauge("actiond_jobs", "Actions that may run at once (--jobs).", () => snap.worker.jobs);
  new Gauge({
    name: "actiond_executions",
    help: "Executions known by name, by stage (QUEUED, EXECUTING, COMPLETED for recently finished).",
    labelNames: ["stage"],
    registers,
    collect() {
      this.reset();
      for (const stage of ["QUEUED", "EXECUTING", "COMPLETED"]) this.set({ stage }, snap.executionsByStage[stage] ?? 0);
    },
  });
  new Counter({
    name: "actiond_upstream_events_total",
    help: "What the upstream tier did, by kind (resultHits, blobsFetched, corrupt, resultsPushed, failedCalls...).",
    labelNames: ["kind"],
    registers,
    collect() {
      this.reset();
      for (const [kind, n] of Object.entries(snap.upstream?.counts ?? {})) this.inc({ kind }, n);
    },
  });
  gauge("actiond_upstream_up", "1 while the upstream answers, 0 while it is considered down (absent without --upstream: 1).", () => (snap.upstream && !snap.upstream.up ? 0 : 1));
  gauge("actiond_upstream_queued_pushes", "Pushes waiting for the upstream.", () => snap.upstream?.queued ?? 0);
  const phases = new Histogram({ name: "actiond_action_phase_seconds", help: "Where executed actions' time went, by phase.", labelNames: ["phase"], buckets: PHASE_BUCKETS, registers });
  source.onAction((t) => {
    for (const [phase, ms] of Object.entries(t)) phases.observe({ phase: phase.replace(/Ms$/, "") }, ms / 1000);
  });
  return {
    contentType: registry.contentType,
    async text() {
      snap = source.snapshot(false);
      return registry.metrics();
    },
  };
}
