"""``/tokens``: group-scoped API tokens (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from autoscaler.api.deps import CallerDep, StoreDep
from autoscaler.api.schemas import Name, Problem, TokenCreate, TokenPublic

router = APIRouter(
    prefix="/tokens",
    tags=["tokens"],
    responses={403: {"model": Problem, "description": "Not an admin token"}},
)


@router.post("", status_code=201)
def create_token(body: TokenCreate, caller: CallerDep, store: StoreDep) -> TokenPublic:
    """A new token that sees and changes only ``group``'s clusters. It is shown only once."""
    caller.require_admin("create tokens")
    return TokenPublic(token=store.create_token(body.group), group=body.group)


@router.delete("/{group}", status_code=204, response_class=Response)
def revoke_tokens(group: Annotated[Name, Path()], caller: CallerDep, store: StoreDep) -> None:
    """Revoke every token of ``group``."""
    caller.require_admin("revoke tokens")
    store.revoke_tokens(group)
