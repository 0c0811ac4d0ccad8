"""The caller of the call being served: the API key that authenticated it
(auth.py), kept in a context variable for the handlers that need it and for
the calls the frontend makes on the caller's behalf (backend.py)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from cairn import keys


@dataclass(frozen=True)
class Caller:
    """An authenticated key: its id, where it works ("*": every namespace) and its role."""

    key_id: str
    namespace: str
    role: str
    expires_at: float | None = None  # epoch seconds

    @property
    def everywhere(self) -> bool:
        return self.namespace == keys.ALL_NAMESPACES


# None when auth is off (--insecure-no-auth).
CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("cairn_caller", default=None)
