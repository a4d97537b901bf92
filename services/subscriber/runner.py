"""``concord subscriber run``: the feed and the HTTP API in one process, one event loop.

The API is served first, from whatever the store holds (answering ``unknown`` until
the feed is confirmed current); the feed connects (and reconnects) beside it.  The
API listens with TLS only, for the clients of the clients file; ``/metrics`` is also
served in plain HTTP on ``metrics_port`` (when given) for Prometheus, which scrapes
no client data.  SIGTERM and Ctrl-C stop everything gracefully: the server drains,
the feed stops between batches, receipts still owed are flushed for a few seconds
and otherwise stay in the outbox for the next start, the query log writes what it
holds.  A feed that fails for good (its topic is missing, its credentials are
refused) stops the server, and the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from prometheus_client import start_http_server

from services.subscriber.api import CheckApp, RequestLimits
from services.subscriber.clients import Clients
from services.subscriber.querylog import QueryLog
from services.subscriber.service import SubscriberService
from services.subscriber.tls import TLSHttpProtocol, server_context

log = logging.getLogger("concord.subscriber")


@dataclass(frozen=True)
class ServeOptions:
    certfile: Path  # the server's key, certificate and chain (PEM)
    client_ca: Path  # the agency's CA, which issued the clients' certificates
    host: str = "127.0.0.1"
    port: int = 8443
    metrics_port: int | None = None
    limits: RequestLimits = field(default_factory=RequestLimits)


def uvicorn_config(app: CheckApp, opts: ServeOptions) -> uvicorn.Config:
    ctx = server_context(opts.certfile, opts.client_ca)
    return uvicorn.Config(
        app,
        host=opts.host,
        port=opts.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,  # clients connect directly: their address is the connection's, not a header's
        http=TLSHttpProtocol,
        ssl_context_factory=lambda _config, _default: ctx,
    )


async def serve(svc: SubscriberService, clients: Clients, querylog: QueryLog, opts: ServeOptions) -> None:
    app = CheckApp(svc, clients, querylog, opts.limits)
    server = uvicorn.Server(uvicorn_config(app, opts))
    if opts.metrics_port is not None:
        start_http_server(opts.metrics_port, addr=opts.host, registry=svc.metrics.registry)
    failure: list[BaseException] = []

    async def feed() -> None:
        await svc.start()
        await svc.run()

    def done(task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            failure.append(exc)
            log.error("%s: the directive feed stopped: %s", svc.agency, exc)
            server.should_exit = True

    # uvicorn re-raises the signal that stopped it once it has shut down; with the
    # default SIGTERM action that would end the process before the feed is stopped.
    # Until uvicorn installs its own handlers (and after it restores these), a
    # signal asks the server to exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
    querylog.start()
    task = asyncio.create_task(feed())
    task.add_done_callback(done)
    try:
        await server.serve()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await svc.stop()
        svc.store.close()
        querylog.close()
    if failure:
        raise failure[0]


def run(svc: SubscriberService, clients: Clients, querylog: QueryLog, opts: ServeOptions) -> None:
    asyncio.run(serve(svc, clients, querylog, opts))
