"""The service's middleware (ASGI limits, auth, request guard) and request rules."""
