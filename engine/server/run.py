"""`loopls serve`: load the model into the native engine and serve it over HTTP (uvicorn)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from ..backends import BackendConfig, load_backend
from ..model.models import DEFAULT_MODEL
from .app import ServerLimits, create_app


class ServeError(ValueError):
    """The server cannot start as asked (the message says why)."""


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None  # checkpoint folder, cached hub id, or tiny
    served_name: str | None = None  # the id in /v1/models (default: the model as given)
    api_key: str | None = None
    device: str = "auto"
    context_tokens: int = 8192  # sizes the KV pool on CPU (prompts of about this length)
    tensor_parallel_size: int = 1  # GPUs (CPU ranks with device cpu) the model is split over
    limits: ServerLimits = ServerLimits()
    log_level: str = "warning"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, api_key: str | None) -> None:
    """Anything but loopback is reachable by others: refuse it without an API key."""
    if not is_loopback(host) and not api_key:
        raise ServeError(
            f"refusing to listen on {host} without an API key: other machines could use the model; "
            "pass --api-key (or set LOOPLS_API_KEY), or bind to 127.0.0.1"
        )


def serve(options: ServeOptions, announce: Callable[[str], None] | None = None) -> None:
    """Run until interrupted; ServeError or BackendError before anything listens.
    `announce` gets one line saying what is served where, once the model is loaded."""
    import uvicorn

    check_bind(options.host, options.api_key)
    if not 0 <= options.port < 65536:
        raise ServeError(f"port {options.port} is out of range")
    backend = load_backend(BackendConfig(kind="native", model=options.model, device=options.device,
                                         context_tokens=options.context_tokens,
                                         tensor_parallel_size=options.tensor_parallel_size))
    name = options.served_name or options.model or DEFAULT_MODEL
    app = create_app(backend, name, api_key=options.api_key, limits=options.limits)
    info = backend.info
    if announce is not None:
        host = f"[{options.host}]" if ":" in options.host else options.host
        announce(f"serving {name} ({info.model_type} on {info.device}) at http://{host}:{options.port}/v1")
    try:
        uvicorn.run(app, host=options.host, port=options.port, log_level=options.log_level,
                    timeout_graceful_shutdown=5)
    finally:
        backend.shutdown()
