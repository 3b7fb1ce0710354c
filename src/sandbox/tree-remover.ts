// Removing work folders, off the event loop and however deep an action made them: the sandbox
// helper in its --remove-trees mode, one process for the server's whole life, takes paths on stdin
// and answers a line each (shim/remove-tree.c). Without a helper (--sandbox=none on a machine that
// has none) the removal falls back to Node's, which is fine for trees of ordinary depth.
import type { Subprocess } from "bun";
import { removeTreeAsync, type Logger } from "../core";

interface Helper {
  proc: Subprocess<"pipe", "pipe", "inherit">;
  /** Answers it owes, in the order the paths were sent. */
  waiting: { path: string; done: (error?: string) => void }[];
}

export class TreeRemover {
  private helperProcess: Helper | undefined;

  constructor(
    private readonly helper: string | undefined,
    private readonly log: Logger,
  ) {}

  /** Removes the tree at path (nothing there is fine); resolves once it is gone. A failure is logged, not thrown. */
  async remove(path: string): Promise<void> {
    if (!this.helper) return removeTreeAsync(path, this.log);
    const error = await new Promise<string | undefined>((done) => {
      const h = this.running();
      h.waiting.push({ path, done });
      h.proc.stdin.write(`${path}\0`);
      h.proc.stdin.flush();
    });
    if (error) this.log.warn(`cannot remove ${path}: ${error}`);
  }

  /** Stops the helper once the removals asked for are done. */
  async close(): Promise<void> {
    const h = this.helperProcess;
    if (!h) return;
    this.helperProcess = undefined;
    h.proc.stdin.end();
    await h.proc.exited;
  }

  private running(): Helper {
    if (this.helperProcess) return this.helperProcess;
    const h: Helper = { proc: Bun.spawn([this.helper!, "--remove-trees"], { stdin: "pipe", stdout: "pipe", stderr: "inherit" }), waiting: [] };
    this.helperProcess = h;
    void this.readAnswers(h);
    return h;
  }

  private async readAnswers(h: Helper): Promise<void> {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of h.proc.stdout) {
      buffered += decoder.decode(chunk, { stream: true });
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        h.waiting.shift()?.done(line === "ok" ? undefined : line.replace(/^error /, ""));
      }
    }
    // The helper ended (closed, or died): whatever it still owed is done another way.
    await h.proc.exited;
    if (this.helperProcess === h) this.helperProcess = undefined;
    for (const w of h.waiting.splice(0)) void removeTreeAsync(w.path, this.log).then(() => w.done());
  }
}
