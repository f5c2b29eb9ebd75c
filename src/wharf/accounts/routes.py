"""HTTP adapter for logins, API tokens and users."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from starlette.concurrency import run_in_threadpool

from wharf.accounts import service
from wharf.accounts.schemas import (
    AccessToken,
    Session,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from wharf.core.data.db import Db
from wharf.core.data.pagination import PageOf, PageParams, page_response
from wharf.core.deps import SettingsDep, base_url
from wharf.core.http.concurrency import optional_precondition, precondition, versioned_response
from wharf.core.http.responses import JSONBytes
from wharf.core.http.routing import Router
from wharf.core.http.schemas import MAX_INT, MIN_INT
from wharf.core.http.session import clear_cookie, csrf_token, set_cookie
from wharf.core.security import Admin, Principal, Reader, Writer, oauth2_scheme, token_hash

router = Router()


def _user(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "url": f"{base_url(request)}/api/v1/users/{row['id']}", **row}


def _token(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "url": f"{base_url(request)}/api/v1/auth/tokens/{row['id']}", **row}


@router.post("/auth/token", response_model=AccessToken, tags=["auth"])
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], db: Db, settings: SettingsDep
) -> Response:
    """Log in with email (`username`) and password: OAuth2 password grant, bearer token."""
    # argon2 takes tens of milliseconds by design: keep it off the event loop.
    body = await run_in_threadpool(
        service.login,
        db,
        email=form.username,
        password=form.password,
        scope=" ".join(form.scopes),
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    return JSONBytes(body, headers={"Cache-Control": "no-store"})


@router.post("/auth/session", response_model=Session, tags=["auth"])
async def start_session(
    username: Annotated[str, Form(min_length=1, max_length=320, description="The email.")],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    request: Request,
    db: Db,
    settings: SettingsDep,
) -> Response:
    """Log in a browser: the token goes into an HttpOnly, SameSite=Strict cookie, never into
    the body, so no script on the page can read it (core.http.session)."""
    granted = await run_in_threadpool(
        service.login,
        db,
        email=username,
        password=password,
        scope="",
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    token = granted["access_token"]
    principal = service.resolve_token(db, token_hash(token))
    assert principal is not None  # issued in this very transaction
    secure = request.url.scheme == "https"
    max_age = settings.access_token_ttl_seconds
    return JSONBytes(
        _session(request, db, principal, token),
        headers={
            "Cache-Control": "no-store",
            "Set-Cookie": set_cookie(token, max_age=max_age, secure=secure),
        },
    )


@router.get("/auth/session", response_model=Session, tags=["auth"])
async def get_session(
    request: Request, db: Db, me: Reader, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Response:
    """The logged-in user and the session's CSRF value (401 once it has expired or was revoked)."""
    assert token is not None  # `me` was resolved from it
    return JSONBytes(_session(request, db, me, token), headers={"Cache-Control": "no-store"})


@router.delete("/auth/session", status_code=204, tags=["auth"])
async def end_session(request: Request, db: Db, me: Reader) -> Response:
    """Log out: the session's token is revoked, and the cookie cleared."""
    service.revoke_token(db, viewer=me, token_id=me.token_id)
    secure = request.url.scheme == "https"
    return Response(status_code=204, headers={"Set-Cookie": clear_cookie(secure=secure)})


def _session(request: Request, db: Db, me: Principal, token: str) -> dict[str, Any]:
    user = service.get_user(db, user_id=me.user_id, viewer=me)
    return {
        "user": _user(request, user),
        "scopes": sorted(me.scopes),
        "expires_at": me.expires_at,
        "csrf_token": csrf_token(token),
    }


@router.post("/auth/tokens", status_code=201, response_model=TokenCreated, tags=["auth"])
async def create_token(
    body: TokenCreate, request: Request, db: Db, me: Writer, settings: SettingsDep
) -> Response:
    """Mint a named API token; the secret is in this response only."""
    row = service.create_api_token(
        db,
        owner=me,
        name=body.name,
        scopes=body.scopes,
        days=body.expires_in_days,
        max_days=settings.api_token_max_days,
    )
    return versioned_response(request, _token(request, row), status=201, location=True)


@router.get("/auth/tokens", response_model=PageOf[TokenRead], tags=["auth"])
async def list_tokens(
    request: Request,
    db: Db,
    me: Reader,
    page: PageParams,
    user_id: Annotated[
        int | None, Query(ge=MIN_INT, le=MAX_INT, description="Admins: another user's tokens.")
    ] = None,
) -> Response:
    """Your API tokens (admins may ask for another user's)."""
    rows, total = service.list_tokens(db, viewer=me, user_id=user_id, page=page)
    return page_response(request, [_token(request, r) for r in rows], total, page)


@router.get("/auth/tokens/{token_id}", response_model=TokenRead, tags=["auth"])
async def get_token(token_id: int, request: Request, db: Db, me: Reader) -> Response:
    """One of your tokens (never its secret)."""
    row = service.get_token(db, viewer=me, token_id=token_id)
    return versioned_response(request, _token(request, row))


@router.delete("/auth/tokens/{token_id}", status_code=204, tags=["auth"])
async def revoke_token(token_id: int, db: Db, me: Writer) -> Response:
    """Revoke a token; it is refused from the next request on."""
    service.revoke_token(db, viewer=me, token_id=token_id)
    return Response(status_code=204)


@router.post("/users", status_code=201, response_model=UserRead, tags=["users"])
async def create_user(body: UserCreate, request: Request, db: Db, _: Admin) -> Response:
    """Create a user (admins only). A taken email is 409."""
    row = await run_in_threadpool(
        service.create_user,
        db,
        email=body.email,
        name=body.name,
        password=body.password,
        role=body.role,
    )
    return versioned_response(request, _user(request, row), status=201, location=True)


@router.get("/users", response_model=PageOf[UserRead], tags=["users"])
async def list_users(request: Request, db: Db, _: Admin, page: PageParams) -> Response:
    """All users (admins only)."""
    rows, total = service.list_users(db, page=page)
    return page_response(request, [_user(request, r) for r in rows], total, page)


@router.get("/users/{user_id}", response_model=UserRead, tags=["users"])
async def get_user(user_id: int, request: Request, db: Db, me: Reader) -> Response:
    """A user: yourself, or anyone if you are an admin."""
    row = service.get_user(db, user_id=user_id, viewer=me)
    return versioned_response(request, _user(request, row))


@router.patch("/users/{user_id}", response_model=UserRead, tags=["users"])
async def patch_user(
    user_id: int, body: UserUpdate, request: Request, db: Db, me: Writer
) -> Response:
    """Change name, email, password (or, for admins, role). Needs the version you last read."""
    expected = precondition(request, body.version)
    changes = body.changes()
    row = await run_in_threadpool(
        service.update_user, db, user_id=user_id, viewer=me, changes=changes, expected=expected
    )
    return versioned_response(request, _user(request, row))


@router.delete("/users/{user_id}", status_code=204, tags=["users"])
async def delete_user(user_id: int, request: Request, db: Db, me: Writer) -> Response:
    """Delete a user and revoke all their tokens."""
    service.delete_user(db, user_id=user_id, viewer=me, expected=optional_precondition(request))
    return Response(status_code=204)
