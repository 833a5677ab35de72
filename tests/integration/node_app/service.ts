// A small Node service for tests/integration/test_node_runtime.py (compiled by the test with tsc).
import { BusinessLogicError, Context, NotFound, Forbidden, fn, service } from "@dormant/runtime";

const tallies = new Map<string, number>();
const held: Buffer[] = [];

@service("node-echo")
export class EchoService {
  @fn("echo")
  async echo(input: { text: string; count?: number }, ctx: Context): Promise<object> {
    return { text: input.text, ...(input.count !== undefined ? { count: input.count } : {}), callId: ctx.callId, probe: ctx.headers["x-probe"] ?? null, runtime: "node" };
  }

  @fn("fail")
  async fail(input: { kind: string; message: string }): Promise<object> {
    if (input.kind === "business") throw new BusinessLogicError(input.message, { reason: "asked" });
    if (input.kind === "notfound") throw new NotFound(input.message, { reason: "asked" });
    if (input.kind === "forbidden") throw new Forbidden(input.message);
    throw new Error(input.message);
  }

  @fn("tally")
  async tally(input: { key: string }): Promise<object> {
    const runs = (tallies.get(input.key) ?? 0) + 1;
    tallies.set(input.key, runs);
    return { key: input.key, runs };
  }

  @fn("sleep", { timeout: 2 })
  async sleep(input: { ms: number; key?: string }): Promise<object> {
    await new Promise((r) => setTimeout(r, input.ms));
    if (input.key) tallies.set(input.key, (tallies.get(input.key) ?? 0) + 1);
    return { slept: input.ms };
  }

  @fn("allocate", { timeout: 30 })
  async allocate(input: { mb: number }): Promise<object> {
    // Holds `mb` more MiB (touched, so resident), 1 MiB at a time with a pause between (as real work would).
    for (let i = 0; i < input.mb; i++) {
      held.push(Buffer.alloc(1024 * 1024, 1));
      if (i % 8 === 7) await new Promise((r) => setTimeout(r, 1));
    }
    return { pid: process.pid, heldMb: held.length };
  }
}
