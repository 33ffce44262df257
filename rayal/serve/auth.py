"""Bearer-token auth of ``rayal serve``: two roles per project, tokens never logged.

Tokens come from ``serve.tokens`` in the config, else from the environment
(``RAYAL_SERVE_ADMIN_TOKEN``, ``RAYAL_SERVE_ANNOTATOR_TOKEN``: comma-separated, all
projects), else they are generated at start and written to ``<output_dir>/serve/tokens.json``
readable only by its owner (mode 0600). Roles: ``annotator`` (lease, read tasks, submit labels)
and ``admin`` (everything an annotator may, plus rounds, training, tokens). Only sha256 digests
are kept in memory after loading; comparisons are constant-time.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass

from rayal.config.serve import ROLES, TokenConfig

ENV_TOKENS = {"admin": "RAYAL_SERVE_ADMIN_TOKEN", "annotator": "RAYAL_SERVE_ANNOTATOR_TOKEN"}
TOKEN_FILE = "tokens.json"


class AuthError(Exception):
    """``status`` 401 (no / unknown token) or 403 (wrong role or project); ``detail`` says which."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    role: str
    projects: tuple[str, ...]

    def allows(self, project: str, role: str) -> bool:
        rank = ROLES.index
        return ("*" in self.projects or project in self.projects) and rank(self.role) >= rank(role)


def tokens_from_env(environ=None) -> list[TokenConfig]:
    """Tokens named by ``RAYAL_SERVE_ADMIN_TOKEN`` / ``RAYAL_SERVE_ANNOTATOR_TOKEN``."""
    environ = os.environ if environ is None else environ
    out = []
    for role, name in ENV_TOKENS.items():
        for token in filter(None, (t.strip() for t in environ.get(name, "").split(","))):
            if len(token) < 16:
                raise ValueError(f"{name}: a token must have at least 16 characters")
            out.append(TokenConfig(token=token, role=role))
    return out


def generate_tokens(serve_dir: str, project: str) -> tuple[list[TokenConfig], str]:
    """One admin and one annotator token for ``project`` in ``<serve_dir>/tokens.json`` (0600)
    -> (tokens, path). The file is created with mode 0600 before anything is written to it."""
    os.makedirs(serve_dir, exist_ok=True)
    path = os.path.abspath(os.path.join(serve_dir, TOKEN_FILE))
    tokens = [TokenConfig(token=secrets.token_urlsafe(32), role=r, projects=[project]) for r in ROLES]
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"project": project, "tokens": [t.model_dump() for t in tokens]}, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return tokens, path


class TokenBook:
    """Digest -> grant; :meth:`check` turns an ``Authorization`` header into a grant or raises."""

    def __init__(self, tokens: list[TokenConfig | dict]):
        self._grants = {}
        for t in tokens:
            t = TokenConfig.model_validate(t)
            self._grants[_digest(t.token)] = Grant(t.role, tuple(t.projects))
        if not self._grants:
            raise ValueError("no serve tokens: the service never serves /v1 unauthenticated")

    def check(self, authorization: str | None, project: str, role: str) -> Grant:
        """Raise :class:`AuthError` 401 without a valid ``Bearer`` token, 403 when the token's
        role or projects do not cover ``role`` on ``project``."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        digest = _digest(token.strip())
        grant = next((g for d, g in self._grants.items() if hmac.compare_digest(d, digest)), None)
        if grant is None:
            raise AuthError(401, "invalid token")
        if not grant.allows(project, role):
            raise AuthError(403, f"this {grant.role} token may not act as {role} on project "
                            f"{project!r}")
        return grant


def resolve_tokens(configured: list[TokenConfig], serve_dir: str, project: str,
                   environ=None) -> tuple[list[TokenConfig], str | None]:
    """(tokens, path of a generated token file or None): config, else environment, else new."""
    if configured:
        return list(configured), None
    env = tokens_from_env(environ)
    if env:
        return env, None
    return generate_tokens(serve_dir, project)


# --- Label Studio's image URLs (signed, no bearer token) -----------------------------------
def image_signature(key: bytes, tid: str) -> str:
    """HMAC-SHA256 of a task id: the ``sig`` of its image URL for Label Studio."""
    return hmac.new(key, tid.encode(), hashlib.sha256).hexdigest()[:32]


def signing_key(tokens) -> bytes:
    """A key every replica derives alike from the service's tokens (never the tokens)."""
    digests = sorted(hashlib.sha256(t["token"].encode()).hexdigest() for t in tokens)
    return hashlib.sha256(("rayal-ls-image:" + ",".join(digests)).encode()).digest()
