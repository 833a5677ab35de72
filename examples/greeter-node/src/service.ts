/**
 * Greeter on the Node.js runtime: the examples/greeter service in TypeScript, served as `greeter-node`.
 * `greet` answers `{"text": "Hello, NAME!"}`; `httpGreet` takes a gateway HTTP trigger's event.
 */
import { Context, fn, service } from "@dormant/runtime";

import type { GreetRequest, Greeting, HttpEvent, HttpResponse } from "../generated/typescript/models";

@service("greeter-node")
export class Greeter {
  @fn("greet", { timeout: 5 })
  async greet(input: GreetRequest, ctx: Context): Promise<Greeting> {
    ctx.logger.info("greeting", { name: input.name });
    return { text: `Hello, ${input.name}!` };
  }

  @fn("httpGreet", { timeout: 5 })
  async httpGreet(input: HttpEvent, ctx: Context): Promise<HttpResponse> {
    const params = { ...(input.queryStringParameters ?? {}), ...(input.pathParameters ?? {}) };
    const name = params.name || "world";
    ctx.logger.info(`${input.httpMethod} ${input.path}`);
    return { statusCode: 200, headers: { "content-type": "text/plain; charset=utf-8" }, body: `Hello, ${name}!\n` };
  }
}
