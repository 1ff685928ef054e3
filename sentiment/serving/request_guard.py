"""Pure ASGI middleware in front of the prediction routes, and the OpenAPI document to match.

Before BentoML sees a request to a guarded route it checks, in order: the media type
(``application/json`` only, else 415), the body size (``Content-Length`` or the bytes
streamed so far above the limit: 413, without keeping the rest), the JSON against the
route's pydantic model, and that every text has something to score (400). Every refusal
has one shape, ``{"error": "<one line>", "detail": [{"loc": [...], "msg": "..."}]}``, and
``/docs.json`` declares exactly these requests and responses.

Before a 413 the rest of the body is read and dropped, up to ``LINGER_BYTES`` and
``LINGER_S`` ("lingering close", as nginx does): a server that answers and closes while the
client is still sending has its connection reset, and the client never reads the 413.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from sentiment.serving.asgi import App, Message, Receive, Scope, Send, patch_json, respond

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong, in one line."},
        "detail": {
            "type": "array",
            "description": "One entry per problem: where (path into the body) and what.",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}
# A body that is one line only: BentoML's own on a 503, the model card's 404.
MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
LINGER_BYTES = 16 * 2**20  # at most this much of an oversized body is read and dropped
LINGER_S = 5.0  # and for at most this long
REFUSALS = {
    "400": "Not JSON, not the request schema, or a text with nothing to score",
    "413": "Body larger than SENTIMENT_MAX_BODY_BYTES",
    "415": "Content-Type other than application/json",
}


@dataclass(frozen=True)
class Route:
    """A guarded route: its request model and JSON schema, and the per-text check."""

    model: type[BaseModel]
    schema: dict[str, Any]
    texts: Callable[[BaseModel], list[tuple[list[str | int], str]]]  # (loc, text) pairs
    check: Callable[[str], str | None]  # why a text cannot be scored, or None


def error_body(error: str, detail: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps({"error": " ".join(error.split()), "detail": detail or []}).encode()


def request_schema(model: type[BaseModel], text_pattern: str) -> dict[str, Any]:
    """The request model's JSON schema, every string in it also held to ``text_pattern``."""

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string":
                node["pattern"] = text_pattern
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    schema = model.model_json_schema()
    visit(schema)
    return schema


def refusal(err: ValidationError) -> bytes:
    """A pydantic error as the one error shape (no input echoed back)."""
    detail = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in err.errors(include_input=False)]
    first = detail[0]
    where = ".".join(map(str, first["loc"])) or "body"
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    return error_body(f"{where}: {first['msg']}{more}", detail)


def with_routes(spec: dict[str, Any], routes: dict[str, Route]) -> dict[str, Any]:
    """The OpenAPI document saying what the guard enforces on each guarded route."""
    spec.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, route in routes.items():
        operation = spec["paths"][path]["post"]
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": route.schema}},
        }
        ok = operation["responses"]["200"]
        operation["responses"] = {"200": ok} | {
            status: {"description": text, "content": error} for status, text in REFUSALS.items()
        }
        operation["responses"]["503"] = {  # BentoML's own body for a server-side failure
            "description": "Overloaded or out of time (BentoML's traffic limits): retry later",
            "content": {"application/json": {"schema": MESSAGE_SCHEMA}},
        }
    return spec


class RequestGuard:
    """Media type, size, schema and content checks on ``routes``; ``/docs.json`` to match."""

    def __init__(self, app: App, routes: dict[str, Route], max_body: int) -> None:
        self.app = app
        self.routes = routes
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == "/docs.json" and method == "GET":
            return await self.app(scope, receive, patch_json(send, self.document))
        route = self.routes.get(path)
        if route is None or method != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0]
        if media.strip().lower() != "application/json":
            reason = f"Content-Type must be application/json, got {media.strip() or 'none'}"
            return await respond(send, 415, error_body(reason))
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        if declared.isdigit() and int(declared) > self.max_body:
            await drop_the_rest(receive, 0)
            return await respond(send, 413, self.too_large())
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_body:
                if message.get("more_body"):
                    await drop_the_rest(receive, len(body))
                return await respond(send, 413, self.too_large())
            if not message.get("more_body"):
                break
        try:
            request = route.model.model_validate_json(bytes(body))
        except ValidationError as err:
            return await respond(send, 400, refusal(err))
        problems = [
            {"loc": loc, "msg": why}
            for loc, text in route.texts(request)
            if (why := route.check(text)) is not None
        ]
        if problems:
            where = ", ".join(".".join(map(str, p["loc"])) for p in problems)
            return await respond(send, 400, error_body(f"{where}: {problems[0]['msg']}", problems))
        return await self.app(scope, replay(bytes(body), receive), send)

    def too_large(self) -> bytes:
        return error_body(f"body larger than {self.max_body} bytes (SENTIMENT_MAX_BODY_BYTES)")

    def document(self, spec: dict[str, Any]) -> dict[str, Any]:
        return with_routes(spec, self.routes)


async def drop_the_rest(receive: Receive, read: int) -> None:
    """Read and drop what the client is still sending, up to ``LINGER_BYTES`` in all and
    ``LINGER_S``: then it has sent its body and reads the answer instead of a reset."""
    deadline = time.monotonic() + LINGER_S
    while read < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(receive(), left)
        except TimeoutError:
            return
        read += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            return


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body over once, then defers to the server."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
