"""UserService: the example from the Dormant seed, on the platform's DataStore and Messaging.

``createUser`` stores the user in the ``users`` collection and sends a ``user_created`` notification;
``getUser`` reads it back. The DataStore keeps documents in Postgres with row-level security from the
caller's token: a user created by one caller is found by that caller through any replica, and another
caller gets ``NotFound`` (not ``Forbidden``: whether a document exists is itself not theirs to know)
unless the Authorizer granted them ``read`` on ``users`` (``grantRead``, for callers with the ``admin``
role). Emails are unique among each caller's users. The live configuration's ``signups_open`` flag
(``dormant config``) closes ``createUser`` while it is ``false``.

The platform interfaces come in through the constructor, as in the seed (``UserService(IDataStore,
IMessaging)``); each use acts as the caller of the call being served.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from dormant import BusinessLogicError, Context, DataStore, Messaging, NotFound, function, service

from generated.models import (
    CreateUserRequest,
    CreateUserResponse,
    GetUserRequest,
    GrantReadRequest,
    GrantReadResponse,
    User,
)

USERS = "users"


@service("user-service")
class UserService:
    def __init__(self, data: DataStore, messaging: Messaging) -> None:
        self.data = data
        self.messaging = messaging

    @function("createUser", timeout=10)
    async def create_user(self, request: CreateUserRequest, ctx: Context) -> CreateUserResponse:
        # A feature flag in the live configuration: `dormant config set user-service signups_open=false`
        # closes sign-ups from the next call on, without a restart.
        if ctx.config.get("signups_open", True) is False:
            raise BusinessLogicError("sign-ups are closed")
        email = str(request.email).lower()
        if (await self.data.query(USERS, {"email": email}, page_size=1)).total:
            raise BusinessLogicError(f"a user with email {email} already exists", {"email": email})
        user_id = await self.data.insert(
            USERS,
            {
                "id": uuid.uuid4().hex,
                "email": email,
                "name": request.name,
                "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        await self.messaging.send("notifications", {"type": "user_created", "userId": user_id})
        ctx.logger.info("created user %s", user_id)
        return CreateUserResponse(userId=user_id)

    @function("getUser")
    async def get_user(self, request: GetUserRequest, ctx: Context) -> User:
        found = await self.data.get_by_id(USERS, request.userId)
        if found is None:
            raise NotFound(f"no user {request.userId}", {"userId": request.userId})
        return User(
            userId=found["id"], email=found["email"], name=found["name"], createdAt=found["createdAt"]
        )

    @function("grantRead", roles=["admin"])
    async def grant_read(self, request: GrantReadRequest, ctx: Context) -> GrantReadResponse:
        """Let ``user`` read every user record (an ``admin`` only; the grant is audited)."""
        granted = await ctx.authorizer.assign_permissions(request.user, ["read"], ctx.service, USERS)
        return GrantReadResponse(granted=granted)
