// Progress of long start-up work (extracting assets, unpacking a runtime image, a guest's first
// boot): on a terminal one line redrawn in place (a bar when the total is known, the time so far
// when it is not); otherwise plain log lines at each quarter, or when the step changes.
import type { Logger } from "./log";

export interface Progress {
  /** How far: `done` of the total (when there is one), and the step under way. */
  update(done: number, step?: string): void;
  /** Clears the line and logs `summary` (the step's own log line, as without a terminal). */
  end(summary?: string): void;
}

export interface ProgressOptions {
  /** Where a terminal's line is drawn (default stderr, where the log goes). */
  out?: { isTTY?: boolean; columns?: number; write(s: string): unknown };
  /** How the amounts read: "MiB" divides bytes, "count" as they are, "percent" shows none (default count). */
  unit?: "MiB" | "count" | "percent";
}

const REDRAW_MS = 100;
const BAR = 24;

export function startProgress(label: string, total: number | undefined, log: Logger, opts: ProgressOptions = {}): Progress {
  const out = opts.out ?? process.stderr;
  const tty = out.isTTY === true;
  const started = Date.now();
  const amount = (n: number) => (opts.unit === "MiB" ? `${(n / 2 ** 20).toFixed(1)} MiB` : String(n));
  let done = 0;
  let step = "";
  let lastDraw = 0;
  let quarter = 0;
  let ended = false;

  const line = () => {
    const secs = `${((Date.now() - started) / 1000).toFixed(0)} s`;
    if (total === undefined || total <= 0) return `${label}  ${secs}${step ? `  ${step}` : ""}`;
    const f = Math.min(1, done / total);
    const filled = Math.round(f * BAR);
    const amounts = opts.unit === "percent" ? "" : `  ${amount(done)} of ${amount(total)}`;
    return `${label}  [${"=".repeat(filled)}${" ".repeat(BAR - filled)}] ${String(Math.floor(f * 100)).padStart(3)}%${amounts}${step ? `  ${step}` : ""}`;
  };
  const draw = () => {
    const width = Math.max(20, (out.columns || 80) - 1);
    out.write(`\r\x1b[2K${line().slice(0, width)}`);
    lastDraw = Date.now();
  };
  // Without a total, the time so far moves on its own.
  const ticker = tty && (total === undefined || total <= 0) ? setInterval(draw, 1000) : undefined;
  ticker?.unref();
  if (tty) draw();

  return {
    update(n, s) {
      if (ended) return;
      const stepChanged = s !== undefined && s !== step;
      done = n;
      if (s !== undefined) step = s;
      if (tty) {
        if (stepChanged || Date.now() - lastDraw >= REDRAW_MS) draw();
        return;
      }
      const q = total && total > 0 ? Math.floor((4 * Math.min(done, total)) / total) : 0;
      if (q > quarter && q < 4) {
        quarter = q;
        log.info(line());
      } else if (stepChanged && (total === undefined || total <= 0)) log.info(`${label}: ${step}`);
    },
    end(summary) {
      if (ended) return;
      ended = true;
      if (ticker) clearInterval(ticker);
      if (tty) out.write("\r\x1b[2K");
      if (summary) log.info(summary);
    },
  };
}
