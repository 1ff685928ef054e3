"""``/readyz`` names the model version answering now, in its ``x-model-version`` header."""

from __future__ import annotations

from collections.abc import Callable

from sentiment.serving.asgi import App, Message, Receive, Scope, Send

HEADER = b"x-model-version"


class VersionHeader:
    """Adds ``x-model-version`` to a ready ``/readyz`` answer (the body stays BentoML's)."""

    def __init__(self, app: App, version: Callable[[], str | None]) -> None:
        self.app, self.version = app, version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/readyz":
            await self.app(scope, receive, send)
            return

        async def with_version(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                version = self.version()
                if version is not None:
                    headers = [*message.get("headers", []), (HEADER, version.encode())]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_version)
