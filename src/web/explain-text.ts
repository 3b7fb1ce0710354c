// `actiond explain`: why a target's actions missed the cache, as text: for each of its actions (by
// mnemonic and first output) the latest run and what differed from the run before it.
import type { Change } from "../exec";
import type { ExplainedAction } from "./snapshot";

function changeLine(kind: string, c: Change): string {
  const q = (v: string | undefined) => (v === undefined ? "" : kind === "input" ? v : JSON.stringify(v));
  if (c.before === undefined) return `  ${kind} added    ${c.name}  ${q(c.after)}`;
  if (c.after === undefined) return `  ${kind} removed  ${c.name}  (was ${q(c.before)})`;
  return `  ${kind} changed  ${c.name}  ${q(c.before)} -> ${q(c.after)}`;
}

export function formatExplain(selector: string, actions: ExplainedAction[]): string {
  if (actions.length === 0) return `no executed action of ${selector} is recorded here (it may have been a cache hit every time)\n`;
  const out: string[] = [];
  for (const a of actions) {
    const what = [a.target || "(no target)", a.mnemonic, a.output].filter((s) => s !== "").join("  ");
    const ended = a.failure ? `did not run: ${a.failure}` : a.exitCode === undefined ? "" : `exit ${a.exitCode}`;
    out.push(`${what}`, `  ran ${new Date(a.atMs).toISOString()}  action ${a.action}${ended ? `  (${ended})` : ""}`);
    const w = a.why;
    if (!w) {
      out.push("  why it missed: not known (the comparison did not finish)", "");
      continue;
    }
    out.push(`  missed: ${w.summary}`);
    if (w.previous) out.push(`  compared with the run at ${w.previous.at}, action ${w.previous.action}`);
    for (const c of w.inputs) out.push(changeLine("input", c));
    if (w.inputsChanged > w.inputs.length) out.push(`  … ${w.inputsChanged - w.inputs.length} more inputs`);
    if (w.inputsUnknown) out.push(`  inputs: ${w.inputsUnknown}`);
    for (const c of w.args) out.push(changeLine("argument", c));
    for (const c of w.env) out.push(changeLine("env", c));
    for (const c of w.platform) out.push(changeLine("platform", c));
    for (const c of w.other) out.push(changeLine("field", c));
    out.push("");
  }
  return out.join("\n");
}
