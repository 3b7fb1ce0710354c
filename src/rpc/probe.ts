// Whether a REAPI server answers at an address: one GetCapabilities call, with a client of its own
// (one client reused would wait longer and longer between reconnects: grpc-js's backoff).
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { Capabilities, GetCapabilitiesRequestSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { grpcServiceDefinition } from "./grpc-client";

export async function answersCapabilities(address: string, timeoutMs: number): Promise<boolean> {
  const Client = grpc.makeGenericClientConstructor(grpcServiceDefinition(Capabilities), Capabilities.name);
  const client = new Client(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
  try {
    return await new Promise<boolean>((resolve) =>
      client.getCapabilities(create(GetCapabilitiesRequestSchema, {}), { deadline: Date.now() + timeoutMs }, (err: Error | null) => resolve(!err)),
    );
  } finally {
    client.close();
  }
}
