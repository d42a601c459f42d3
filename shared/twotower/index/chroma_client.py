"""chromadb's HTTP client with timeouts, and a leaner one for the query endpoint alone.

chromadb builds its httpx session with `timeout=None`, so a call to a stalled server would wait for
ever. `TimedClient` sets the timeouts on that session before the client's first request (which goes
out while it is being built).
"""

from __future__ import annotations

import http.client
import threading
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from chromadb.api.base_http_client import BaseHTTPClient
from chromadb.api.client import Client
from chromadb.api.fastapi import FastAPI
from chromadb.api.models.Collection import Collection
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


class QueryTransport:
    """Chroma's query endpoint over keep-alive stdlib `http.client` connections, one per thread: the
    search's hot path, where chromadb's httpx client spends several times more CPU per query. Same
    time bounds as `TimedClient`; filters are not checked here (the query service validates them).

    Raises what chromadb's client raises for an error answer, TimeoutError when the server stalls,
    ConnectionError when it cannot be reached or drops the connection."""

    def __init__(self, host: str, port: int, *, connect_timeout_s: float, timeout_s: float) -> None:
        self.host, self.port = host, port
        self.connect_timeout_s, self.timeout_s = connect_timeout_s, timeout_s
        self._local = threading.local()

    def query(self, collection: Collection, body: dict[str, Any]) -> Any:
        path = (
            f"/api/v2/tenants/{quote(collection.tenant, safe='')}/databases/"
            f"{quote(collection.database, safe='')}/collections/{collection.id}/query"
        )
        return self._post(path, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))

    def _post(self, path: str, payload: bytes) -> Any:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                return self._send(conn, path, payload)
            except ConnectionError:  # not a TimeoutError: a stalled server is not retried
                pass  # the server may have closed this kept-alive connection: try a new one, once
        conn = self._local.conn = _Connection(self.host, self.port, self.connect_timeout_s, self.timeout_s)
        return self._send(conn, path, payload)

    def _send(self, conn: _Connection, path: str, payload: bytes) -> Any:
        try:
            conn.request("POST", path, body=payload, headers=_HEADERS)
            response = conn.getresponse()
            data = response.read()
        except TimeoutError:
            self._drop(conn)
            raise
        except (http.client.HTTPException, OSError) as exc:  # refused, reset, closed, unresolvable
            self._drop(conn)
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if response.status >= 400:
            # chromadb's own mapping of an error answer to its exceptions.
            answer = httpx.Response(
                response.status,
                headers=response.getheaders(),
                content=data,
                request=httpx.Request("POST", f"http://{self.host}:{self.port}{path}"),
            )
            BaseHTTPClient._raise_chroma_error(answer)
        return orjson.loads(data)

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None


_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class _Connection(http.client.HTTPConnection):
    """Connects within `connect_timeout_s`, then waits at most `timeout_s` on every read or write."""

    def __init__(self, host: str, port: int, connect_timeout_s: float, timeout_s: float) -> None:
        super().__init__(host, port, timeout=connect_timeout_s)
        self.read_timeout_s = timeout_s

    def connect(self) -> None:
        super().connect()  # TCP_NODELAY included
        self.sock.settimeout(self.read_timeout_s)
