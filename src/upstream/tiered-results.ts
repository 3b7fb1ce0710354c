// The local action cache with the upstream's behind it. A local miss asks the upstream; an entry
// it has is kept here as it came (CompleteResults above checks, on every hit, that each blob it
// names is here or upstream). Results stored here are queued for the upstream when this view pushes.
import type { ActionResult } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import type { ActionCache, BlobDigest } from "../cas";
import type { UpstreamHealth } from "./health";
import type { Remote } from "./remote";

export interface ResultPushes {
  result(action: BlobDigest): void;
}

export class TieredResults implements ActionCache {
  constructor(
    private readonly local: ActionCache,
    private readonly remote: Remote,
    private readonly health: UpstreamHealth,
    private readonly serves: (fn: BlobDigest["fn"]) => boolean,
    private readonly pushes?: ResultPushes,
  ) {}

  async get(action: BlobDigest): Promise<ActionResult | undefined> {
    const here = await this.local.get(action);
    if (here || !this.serves(action.fn)) return here;
    const there = await this.health.ask("GetActionResult", () => this.remote.getActionResult(action), undefined);
    this.health.count(there ? "resultHits" : "resultMisses");
    if (there) await this.local.put(action, there);
    return there;
  }

  async put(action: BlobDigest, result: ActionResult): Promise<void> {
    await this.local.put(action, result);
    this.pushes?.result(action);
  }
}
