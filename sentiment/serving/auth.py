"""Bearer-token access to the service: an ASGI middleware, and the OpenAPI scheme it declares.

With a token configured, every route needs ``Authorization: Bearer <token>`` except the
open ones: the probes always, and (scope ``predict``, the default) also ``/metrics``, the
OpenAPI document, the Swagger UI and the model card; scope ``all`` closes those too. Deny by
default: a route BentoML adds later is closed unless named here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from sentiment.serving.asgi import App, Receive, Scope, Send, patch_json, respond

PROBES = ("/readyz", "/livez", "/healthz")
DOCS = ("/", "/docs.json", "/schema.json", "/metrics", "/static_content/", "/model/card")
SCOPES = ("predict", "all")
SCHEME = "bearerAuth"


def open_paths(scope: str) -> tuple[str, ...]:
    """Paths (a trailing ``/`` means the folder) that need no token under ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"SENTIMENT_API_TOKEN_SCOPE must be one of {SCOPES}, got {scope!r}")
    return PROBES if scope == "all" else PROBES + DOCS


def is_open(path: str, opened: tuple[str, ...]) -> bool:
    return any(path == p or (p.endswith("/") and p != "/" and path.startswith(p)) for p in opened)


def authorized(header: str | None, token: str) -> bool:
    """``Bearer <token>``, compared in constant time (digests hide the length too)."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    expected = hashlib.sha256(token.encode()).digest()
    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), expected)


def with_bearer_scheme(spec: dict[str, Any], opened: tuple[str, ...]) -> dict[str, Any]:
    """The OpenAPI document with the bearer scheme declared on every closed operation."""
    spec.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The service's SENTIMENT_API_TOKEN.",
    }
    for path, item in spec.get("paths", {}).items():
        if is_open(path, opened):
            continue
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["security"] = [{SCHEME: []}]
                operation["responses"].setdefault(
                    "401", {"description": "Missing or wrong bearer token"}
                )
    return spec


class BearerAuth:
    """Pure ASGI middleware: 401 without the token on closed paths; patches ``/docs.json``."""

    def __init__(self, app: App, token: str, scope: str = "predict") -> None:
        self.app = app
        self.token = token
        self.opened = open_paths(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if is_open(path, self.opened) or authorized(header, self.token):
            if path == "/docs.json":
                send = patch_json(send, lambda spec: with_bearer_scheme(spec, self.opened))
            return await self.app(scope, receive, send)
        body = json.dumps({"error": "missing or wrong bearer token"}).encode()
        await respond(send, 401, body, [(b"www-authenticate", b"Bearer")])
