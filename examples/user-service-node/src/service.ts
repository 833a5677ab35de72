/**
 * UserService on the Node.js runtime: examples/user-service in TypeScript, served as `user-service-node`.
 *
 * `createUser` stores the user in the `users` collection and sends a `user_created` event on
 * `events/notifications`; `getUser` reads it back. The DataStore keeps documents in Postgres with
 * row-level security from the caller's token: a user created by one caller is found by that caller, and
 * another caller gets `NotFound` unless the Authorizer granted them `read` on `users` (`grantRead`, for
 * callers with the `admin` role). Emails are unique among each caller's users. The live configuration's
 * `signups_open` flag (`dormant config`) closes `createUser` while it is `false`.
 *
 * The platform interfaces come in through the constructor; each use acts as the caller of the call
 * being served, and the DataStore's writes commit with the call's stored answer (once per callId).
 */
import { randomUUID } from "node:crypto";

import { BusinessLogicError, Context, NotFound, fn, service } from "@dormant/runtime";
import type { DataStore, Messaging, Platform } from "@dormant/runtime";

import type {
  CreateUserRequest,
  CreateUserResponse,
  GetUserRequest,
  GrantReadRequest,
  GrantReadResponse,
  User,
} from "../generated/typescript/models";

const USERS = "users";

@service("user-service-node")
export class UserService {
  private readonly data: DataStore;
  private readonly messaging: Messaging;

  constructor(platform: Platform) {
    this.data = platform.data;
    this.messaging = platform.messaging;
  }

  @fn("createUser", { timeout: 10 })
  async createUser(request: CreateUserRequest, ctx: Context): Promise<CreateUserResponse> {
    // A feature flag in the live configuration: `dormant config set user-service-node signups_open=false`
    // closes sign-ups from the next call on, without a restart.
    if (ctx.config.signups_open === false) throw new BusinessLogicError("sign-ups are closed");
    const email = request.email.toLowerCase();
    if ((await this.data.query(USERS, { email }, { pageSize: 1 })).total > 0) {
      throw new BusinessLogicError(`a user with email ${email} already exists`, { email });
    }
    const userId = await this.data.insert(USERS, {
      id: randomUUID().replaceAll("-", ""),
      email,
      name: request.name,
      createdAt: new Date().toISOString().replace(/\.\d{3}Z$/, "+00:00"),
    });
    await this.messaging.send("notifications", { type: "user_created", userId });
    ctx.logger.info(`created user ${userId}`);
    return { userId };
  }

  @fn("getUser")
  async getUser(request: GetUserRequest, ctx: Context): Promise<User> {
    const found = await this.data.getById(USERS, request.userId);
    if (found === null) throw new NotFound(`no user ${request.userId}`, { userId: request.userId });
    return {
      userId: String(found.id),
      email: String(found.email),
      name: String(found.name),
      createdAt: String(found.createdAt),
    };
  }

  /** Let `user` read every user record (an `admin` only; the grant is audited). */
  @fn("grantRead", { roles: ["admin"] })
  async grantRead(request: GrantReadRequest, ctx: Context): Promise<GrantReadResponse> {
    const granted = await ctx.authorizer.assignPermissions(request.user, ["read"], ctx.service, USERS);
    return { granted };
  }
}
