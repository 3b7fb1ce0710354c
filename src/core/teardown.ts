// A stack of things to undo: each resource registers its closer as it is made, and run() closes
// them in reverse order, so nothing is stopped before what depends on it. A closer that fails is
// logged and the rest still run.
import type { Logger } from "./log";

export class Teardown {
  private readonly steps: { what: string; close: () => unknown }[] = [];

  /** Registers `close` to run at teardown, before everything registered earlier. */
  defer(what: string, close: () => unknown): void {
    this.steps.push({ what, close });
  }

  /** Runs every closer, newest first; each only once, even if run() is called again. */
  async run(log: Logger): Promise<void> {
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      try {
        await step.close();
      } catch (err) {
        log.warn(`stopping ${step.what}: ${(err as Error).message}`);
      }
    }
  }
}
