// google.longrunning.Operations on the operation names Execute hands out: look one up, list them,
// wait for one, cancel it (its processes are killed, and the Execute stream ends with CANCELLED
// in the ExecuteResponse's status), or forget its name.
import { create } from "@bufbuild/protobuf";
import { EmptySchema, type Empty } from "@bufbuild/protobuf/wkt";
import type { GrpcCall } from "../transport";
import {
  ListOperationsResponseSchema,
  Operations,
  type CancelOperationRequest,
  type DeleteOperationRequest,
  type GetOperationRequest,
  type ListOperationsRequest,
  type ListOperationsResponse,
  type Operation,
  type WaitOperationRequest,
} from "../gen/google/longrunning/operations_pb";
import { Code, StatusError } from "../core";
import type { Execution } from "../exec";
import type { ServerContext } from "./context";
import { unary } from "./grpc-service";
import { operationNow } from "./operation";

const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;
/** How long WaitOperation waits when the request sets no timeout, and at most. */
const DEFAULT_WAIT_MS = 60_000;
const MAX_WAIT_MS = 10 * 60_000;

export function operationsService(ctx: ServerContext) {
  const { executor } = ctx;

  function known(name: string): Execution {
    const e = executor.find(name);
    if (!e) throw new StatusError(Code.NOT_FOUND, `no operation named "${name}" (finished long ago, or from before a restart)`);
    return e;
  }

  async function getOperation(req: GetOperationRequest): Promise<Operation> {
    return operationNow(known(req.name));
  }

  async function listOperations(req: ListOperationsRequest): Promise<ListOperationsResponse> {
    if (req.filter !== "") throw new StatusError(Code.INVALID_ARGUMENT, `filter "${req.filter}": ListOperations takes no filter here`);
    if (req.name !== "" && req.name !== "operations") throw new StatusError(Code.INVALID_ARGUMENT, `name "${req.name}": the operations are listed under "operations"`);
    if (req.pageSize < 0) throw new StatusError(Code.INVALID_ARGUMENT, `page_size ${req.pageSize} is negative`);
    if (req.pageToken !== "" && !/^\d{1,9}$/.test(req.pageToken)) throw new StatusError(Code.INVALID_ARGUMENT, `page_token "${req.pageToken}" was not issued by this server`);
    const size = Math.min(req.pageSize || DEFAULT_PAGE, MAX_PAGE);
    const from = Number(req.pageToken || 0);
    const all = executor.list();
    const page = all.slice(from, from + size);
    const next = from + page.length < all.length ? String(from + page.length) : "";
    return create(ListOperationsResponseSchema, { operations: page.map(operationNow), nextPageToken: next });
  }

  async function cancelOperation(req: CancelOperationRequest): Promise<Empty> {
    const e = known(req.name);
    if (!e.done) e.cancel("the action was cancelled by CancelOperation");
    return create(EmptySchema);
  }

  async function deleteOperation(req: DeleteOperationRequest): Promise<Empty> {
    if (!executor.forget(req.name)) throw new StatusError(Code.NOT_FOUND, `no operation named "${req.name}"`);
    return create(EmptySchema);
  }

  /** The operation once it is done, or as it stands when the timeout (or the caller's patience) ends. */
  async function waitOperation(req: WaitOperationRequest, call: GrpcCall): Promise<Operation> {
    const e = known(req.name);
    const asked = req.timeout ? Number(req.timeout.seconds) * 1000 + req.timeout.nanos / 1e6 : DEFAULT_WAIT_MS;
    if (!e.done && asked > 0) {
      await new Promise<void>((resolve) => {
        const cancel = ctx.clock.after(Math.min(asked, MAX_WAIT_MS), () => finish());
        const unwatch = e.watch(() => e.done && finish());
        const unlisten = call.onCancel(() => finish());
        function finish() {
          cancel();
          unwatch();
          unlisten();
          resolve();
        }
      });
    }
    return operationNow(e);
  }

  return {
    service: Operations,
    handlers: {
      getOperation: unary(ctx, "GetOperation", getOperation),
      listOperations: unary(ctx, "ListOperations", listOperations),
      cancelOperation: unary(ctx, "CancelOperation", cancelOperation),
      deleteOperation: unary(ctx, "DeleteOperation", deleteOperation),
      waitOperation: unary(ctx, "WaitOperation", waitOperation),
    },
  };
}
