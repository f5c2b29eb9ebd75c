"""Request and response shapes for users, logins and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from wharf.core.schemas import Patch, Strict

Scope = Literal["read", "write", "admin"]
Role = Literal["admin", "user"]


def _email(value: str) -> str:
    value = value.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or " " in value or domain.startswith("."):
        raise ValueError("must be an email address such as jsmith@example.com")
    return value


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_email)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class UserCreate(Strict):
    name: Name
    email: Email
    password: Password
    role: Role = "user"


class UserUpdate(Patch):
    """PATCH body: only the fields given change."""

    name: Name | None = None
    email: Email | None = None
    password: Password | None = None
    role: Role | None = None


class UserRead(BaseModel):
    id: int
    url: str
    email: str
    name: str
    role: Role
    version: int
    created_at: datetime
    updated_at: datetime


class TokenCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], Field(min_length=1)]
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] = 90


class TokenRead(BaseModel):
    id: int
    url: str
    user_id: int
    name: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="The secret. Shown only in this response; store it now.")


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int
    scope: str
