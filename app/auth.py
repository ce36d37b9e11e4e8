"""API keys: hashed at rest (sha256), each bound to one tenant; admin keys act for any tenant.

The keys file (``NERVE_AUTH_API_KEYS_FILE``) is a JSON list of
``{"sha256": "<hex of the key>", "tenant": "acme", "admin": false, "name": "ci"}``; the keys
themselves are never stored. A caller sends its key as ``Authorization: Bearer <key>`` or
``X-API-Key: <key>`` (or as the password of HTTP Basic auth, as Label Studio sends it). An
admin key works on another tenant's domains by naming it in ``X-Nerve-Tenant``; any other key
naming a tenant not its own is refused. The file is re-read when it changes, so keys rotate
without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from nerve.errors import Forbidden, Unauthenticated
from nerve.settings import Settings

log = logging.getLogger(__name__)

KEY_HEADER = "X-API-Key"
TENANT_HEADER = "X-Nerve-Tenant"
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
KEY_PREFIX = "nrv_"
DEFAULT_TENANT = "default"
# Stat the keys file at most this often; a rotated key is live within this delay.
RELOAD_INTERVAL_S = 5.0


class ApiKeyEntry(BaseModel):
    """One line of the keys file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 hex digest of the key.")
    tenant: str = Field(pattern=TENANT_PATTERN, description="Tenant the key acts for.")
    admin: bool = Field(False, description="May act for any tenant (X-Nerve-Tenant).")
    name: str = Field("", max_length=100, description="A label for logs; never the key.")


_ENTRIES = TypeAdapter(list[ApiKeyEntry])


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant the request acts for, and whether the key is an admin's."""

    tenant: str
    admin: bool
    key_name: str = ""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    """A fresh random key (256 bits): long enough that an unsalted sha256 is safe at rest."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_entry(key: str, tenant: str, *, admin: bool = False, name: str = "") -> ApiKeyEntry:
    """The line of the keys file for ``key`` (validated like the file itself)."""
    return ApiKeyEntry(sha256=hash_key(key), tenant=tenant, admin=admin, name=name)


def add_key(path: Path, tenant: str, *, admin: bool = False, name: str = "") -> str:
    """Append a new key for ``tenant`` to the keys file (created if absent) and return the key:
    the only time it is seen. The file is replaced atomically, so a gateway re-reading it never
    sees half of it. A new file is readable by its owner only (0600); a replaced one keeps its
    group and its owner/group permissions (the operator's ``chgrp``/``chmod`` that lets the
    gateway's user read it), never access for others."""
    entries = list(load_keys(path).values()) if path.exists() else []
    key = new_api_key()
    entries.append(key_entry(key, tenant, admin=admin, name=name))
    payload = json.dumps([e.model_dump() for e in entries], indent=2) + "\n"
    mode, group = 0o600, None
    if path.exists():
        current = path.stat()
        mode, group = stat.S_IMODE(current.st_mode) & 0o770, current.st_gid
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(payload, encoding="utf-8")
        temporary.chmod(mode)
        if group is not None and group != temporary.stat().st_gid:
            os.chown(temporary, -1, group)  # PermissionError if the writer is not in the group
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return key


def load_keys(path: Path) -> dict[str, ApiKeyEntry]:
    """The keys file as {sha256: entry}; ValueError naming the file and the faulty entry."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"API keys file {path}: cannot read it: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"API keys file {path}: not JSON: {exc}") from exc
    try:
        entries = _ENTRIES.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ValueError(f"API keys file {path}: {problems}") from None
    keys: dict[str, ApiKeyEntry] = {}
    for index, entry in enumerate(entries):
        if entry.sha256 in keys:
            raise ValueError(f"API keys file {path}: entry {index} repeats a key hash")
        keys[entry.sha256] = entry
    return keys


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        # HTTP Basic (Label Studio's ML backend connection): the password is the key.
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            _, colon, password = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
            if colon and password:
                return password
    key = request.headers.get(KEY_HEADER, "").strip()
    return key or None


class Authenticator:
    """Resolves a request to its :class:`Caller`, raising 401/403 errors of :mod:`nerve.errors`.

    Calling the object returns the tenant: it is the ``Components.authenticator`` hook that
    :func:`app.deps.get_tenant` uses.
    """

    def __init__(
        self,
        path: Path,
        *,
        reload_interval_s: float = RELOAD_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.reload_interval_s = reload_interval_s
        self._clock = clock
        self._keys = load_keys(path)
        self._signature = self._fingerprint()
        self._checked_at = clock()
        if not self._keys:
            log.warning("API keys file %s holds no key: every request will be refused", path)

    def _fingerprint(self) -> str | None:
        # The content, not the mtime: a rewrite within the same clock tick is still seen.
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked_at < self.reload_interval_s:
            return
        self._checked_at = now
        signature = self._fingerprint()
        if signature is None or signature == self._signature:
            return
        try:
            keys = load_keys(self.path)
        except ValueError as exc:
            # A half-written or broken file must not lock everyone out: keep the last good keys.
            log.error("keeping the previous API keys: %s", exc)
            return
        self._keys, self._signature = keys, signature
        log.info("API keys reloaded", extra={"keys": len(keys)})

    def caller(self, request: Request) -> Caller:
        self._refresh()
        key = presented_key(request)
        if key is None:
            raise Unauthenticated(
                f"an API key is required: send 'Authorization: Bearer <key>' or '{KEY_HEADER}'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        entry = self._keys.get(hash_key(key))
        if entry is None:
            raise Unauthenticated(
                "the API key is not valid", headers={"WWW-Authenticate": "Bearer"}
            )
        tenant = entry.tenant
        asked = request.headers.get(TENANT_HEADER, "").strip()
        if asked and asked != entry.tenant:
            if not entry.admin:
                raise Forbidden(f"this key acts for its own tenant only; {TENANT_HEADER} refused")
            if not _valid_tenant(asked):
                raise Forbidden(f"{TENANT_HEADER} must match {TENANT_PATTERN}; got {asked!r}")
            tenant = asked
        caller = Caller(tenant=tenant, admin=entry.admin, key_name=entry.name)
        request.state.caller = caller
        return caller

    def __call__(self, request: Request) -> str:
        return self.caller(request).tenant


def _valid_tenant(name: str) -> bool:
    return re.fullmatch(TENANT_PATTERN, name) is not None


def build_authenticator(settings: Settings) -> Authenticator | None:
    """None when auth is off; with auth on, a keys file is required (refuses to start without)."""
    if not settings.auth.enabled:
        return None
    if settings.auth.api_keys_file is None:
        raise ValueError("NERVE_AUTH_ENABLED is set but NERVE_AUTH_API_KEYS_FILE is not")
    return Authenticator(settings.auth.api_keys_file)


def get_caller(request: Request) -> Caller:
    """The caller; with auth off, the single default tenant with every right."""
    # Built with the other components (a missing one is a 500, never an open door).
    authenticator: Authenticator | None = request.app.state.components.authenticator
    if authenticator is None:
        return Caller(tenant=DEFAULT_TENANT, admin=True)
    return authenticator.caller(request)


def require_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    if not caller.admin:
        raise Forbidden("this route needs an admin key")
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]
AdminDep = Annotated[Caller, Depends(require_admin)]
