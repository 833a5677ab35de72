"""UserService: the example from the Dormant seed, kept in memory.

``createUser`` registers a user (emails are unique); ``getUser`` looks one up by id.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from dormant import BusinessLogicError, Context, NotFound, function, service

from generated.models import CreateUserRequest, CreateUserResponse, GetUserRequest, User


@service("user-service", auth="optional")  # until triggers carry an identity (see docs/security.md)
class UserService:
    def __init__(self) -> None:
        self._users: dict[str, User] = {}

    @function("createUser", timeout=10)
    async def create_user(self, request: CreateUserRequest, ctx: Context) -> CreateUserResponse:
        email = str(request.email).lower()
        if any(str(u.email).lower() == email for u in self._users.values()):
            raise BusinessLogicError(f"a user with email {email} already exists", {"email": email})
        user = User(
            userId=uuid.uuid4().hex,
            email=email,
            name=request.name,
            createdAt=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._users[user.userId] = user
        ctx.logger.info("created user %s", user.userId)
        return CreateUserResponse(userId=user.userId)

    @function("getUser")
    async def get_user(self, request: GetUserRequest, ctx: Context) -> User:
        user = self._users.get(request.userId)
        if user is None:
            raise NotFound(f"no user {request.userId}", {"userId": request.userId})
        return user
