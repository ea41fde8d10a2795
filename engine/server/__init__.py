"""`loopls serve`: the engine behind an OpenAI-compatible HTTP API (Starlette + uvicorn)."""

from __future__ import annotations

from .app import ServerLimits, create_app
from .run import ServeError, ServeOptions, check_bind, serve

__all__ = ["ServeError", "ServeOptions", "ServerLimits", "check_bind", "create_app", "serve"]
