"""chromadb's HTTP client with timeouts.

chromadb 1.5.9 builds its httpx session with `timeout=None`: against a stalled server (a stopped
process, a full disk, a dropped network) every call would wait for ever, and so would the request
that made it. `TimedClient` sets the timeouts on the client's session before its first request (the
client asks the server for the user identity and the tenant while it is being built).
"""

from __future__ import annotations

import httpx
from chromadb.api.client import Client
from chromadb.api.fastapi import FastAPI
from chromadb.auth import UserIdentity
from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT, Settings


class TimedSettings(Settings):
    """chromadb's settings plus the two timeouts `TimedClient` applies."""

    twotower_connect_timeout_s: float = 2.0
    twotower_timeout_s: float = 15.0


class TimedClient(Client):
    def get_user_identity(self) -> UserIdentity:
        # The first request `Client.__init__` makes: bound the session before it goes out.
        settings = self._system.settings
        server = self._server
        if isinstance(settings, TimedSettings) and isinstance(server, FastAPI):
            # read/write/pool: the most one network wait may take; connect: reaching the server.
            server._session.timeout = httpx.Timeout(
                settings.twotower_timeout_s, connect=settings.twotower_connect_timeout_s
            )
        return super().get_user_identity()


def connect(host: str, port: int, *, connect_timeout_s: float, timeout_s: float) -> Client:
    """A chromadb client of the server at host:port whose every request is bounded in time."""
    settings = TimedSettings(
        chroma_api_impl="chromadb.api.fastapi.FastAPI",
        chroma_server_host=host,
        chroma_server_http_port=port,
        anonymized_telemetry=False,
        twotower_connect_timeout_s=connect_timeout_s,
        twotower_timeout_s=timeout_s,
    )
    return TimedClient(tenant=DEFAULT_TENANT, database=DEFAULT_DATABASE, settings=settings)
