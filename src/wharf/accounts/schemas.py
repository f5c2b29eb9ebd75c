"""Request and response shapes for users, logins and API tokens."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from wharf.core.http.schemas import BLANKS, Patch, Strict

Scope = Literal["read", "write", "admin"]
Role = Literal["admin", "user"]


# The rule the OpenAPI document states, so clients (and the fuzzer) know it: blanks around
# the address are ignored, none inside (\s and \ufeff: JSON Schema's `\s` is another set).
_NO = rf"@{BLANKS}\s\ufeff"
EMAIL_PATTERN = rf"^[{BLANKS}]*[^{_NO}]+@[^{_NO}.]+(\.[^{_NO}.]+)+[{BLANKS}]*$"
_EMAIL = re.compile(EMAIL_PATTERN)


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("must be an email address such as jsmith@example.com")
    return value.strip().lower()


Email = Annotated[
    str,
    Field(min_length=3, max_length=254, json_schema_extra={"pattern": EMAIL_PATTERN}),
    AfterValidator(_email),
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class UserCreate(Strict):
    verbatim = frozenset({"password"})  # a password is checked exactly as typed at login

    name: Name
    email: Email
    password: Password
    role: Role = "user"


class UserUpdate(Patch):
    """PATCH body: only the fields given change."""

    verbatim = frozenset({"password"})

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
    # The schema says the default ceiling (`api_token_max_days`), which a server may lower.
    expires_in_days: Annotated[int, Field(ge=1, le=365)] = 90


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


class Session(BaseModel):
    """A browser session: who is logged in, and the CSRF value its changes must send."""

    user: UserRead
    scopes: list[Scope]
    expires_at: datetime
    csrf_token: str = Field(description="Send as X-CSRF-Token with every change.")
