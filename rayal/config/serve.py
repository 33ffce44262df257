"""Config section of ``rayal serve``: ``serve`` (address, tokens, body limit, automatic retrain)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rayal.config.base import Section

ROLES = ("annotator", "admin")


class TokenConfig(Section):
    """One bearer token: its role and the projects it may act on (``*``: all)."""

    token: str = Field(..., min_length=16, repr=False, description="the secret (>= 16 characters)")
    role: Literal["annotator", "admin"] = "annotator"
    projects: list[str] = Field(default_factory=lambda: ["*"])

    def __repr__(self) -> str:   # never print the secret
        return f"TokenConfig(role={self.role!r}, projects={self.projects!r})"

    __str__ = __repr__


class ServeConfig(Section):
    """The HTTP service annotation tools talk to (see :mod:`rayal.serve`)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    tokens: list[TokenConfig] = Field(default_factory=list, description="bearer tokens; also "
                                      "RAYAL_SERVE_ADMIN_TOKEN / RAYAL_SERVE_ANNOTATOR_TOKEN; none: "
                                      "generated at start into <output_dir>/serve/tokens.json (0600)")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="larger requests get 413")
    max_lease: int = Field(100, ge=1, description="most tasks one lease request returns")
    retrain_every: int | None = Field(None, ge=1, description="retrain after this many new labels")
    replicas: int = Field(1, ge=1, description="ingress replicas")
    start_timeout_s: float = Field(300.0, gt=0, description="how long start-up waits for Ray "
                                   "Serve's HTTP proxy (Ray gives up after a fixed 60 s; a "
                                   "loaded node can need longer): its wait is repeated until this")
    max_ongoing_requests: int = Field(64, ge=1, description="requests one ingress replica "
                                      "handles at once (Ray Serve's default of 5 queues leases "
                                      "at the proxy behind labels waiting on their fsync)")

    @field_validator("tokens")
    @classmethod
    def _distinct(cls, tokens: list[TokenConfig]) -> list[TokenConfig]:
        if len({t.token for t in tokens}) != len(tokens):
            raise ValueError("serve.tokens lists the same token twice")
        return tokens
