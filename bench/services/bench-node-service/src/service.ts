/**
 * The function every responder in the benchmark implements, on the Node.js runtime: echo a short text
 * back. The twin of bench/services/bench-service (same schemas, same answer), served as `bench-node-service`.
 */
import { Context, fn, service } from "@dormant/runtime";

import type { EchoRequest, EchoResponse } from "../generated/typescript/models";

@service("bench-node-service", { auth: "off" })
export class BenchNodeService {
  @fn("echo", { timeout: 10 })
  async echo(input: EchoRequest, _ctx: Context): Promise<EchoResponse> {
    return { text: input.text };
  }
}
