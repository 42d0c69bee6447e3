"""Dependencies of the routes, as ``Annotated`` aliases: the store, the settings, the caller."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from autoscaler.errors import Forbidden
from autoscaler.settings import Settings
from autoscaler.store import Store

MAX_TOKEN_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: an admin (``group`` None) or the holder of a group's token."""

    group: str | None

    @property
    def is_admin(self) -> bool:
        return self.group is None

    def own_group(self, requested: str | None) -> str:
        """The group a new or moved cluster goes to; Forbidden outside the caller's group."""
        if self.group is None:
            return requested or "default"
        if requested is not None and requested != self.group:
            raise Forbidden(f"a token of group {self.group!r} cannot use group {requested!r}")
        return self.group

    def require_admin(self, action: str) -> None:
        if not self.is_admin:
            raise Forbidden(f"only an admin token may {action}")


ADMIN = Caller(group=None)


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

_bearer = HTTPBearer(
    auto_error=False,
    description="The admin token (AUTOSCALER_ADMIN_TOKEN) or a group token (POST /tokens).",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(
        a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
    )


def authenticate(store: StoreDep, settings: SettingsDep, credentials: Credentials) -> Caller:
    """The caller of an ``/api/v1`` request; 401 without a valid bearer token."""
    if not settings.admin_token:  # create_app allows this only with ``insecure``
        return ADMIN
    if credentials is None:
        raise _unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
    token = credentials.credentials
    if _same(token, settings.admin_token):
        return ADMIN
    group = store.token_group(token) if len(token) <= MAX_TOKEN_LENGTH else None
    if group is None:
        raise _unauthorized("invalid token")
    return Caller(group=group)


CallerDep = Annotated[Caller, Depends(authenticate)]
