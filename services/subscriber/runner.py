"""``concord subscriber run``: the feed and the HTTP API in one process, one event loop.

The API is served first, from whatever the store holds; the feed connects (and
reconnects) beside it.  SIGTERM and Ctrl-C stop both gracefully: the server
drains, the feed stops between batches, receipts still owed are flushed for a few
seconds and otherwise stay in the outbox for the next start.  A feed that fails
for good (its topic is missing, its credentials are refused) stops the server,
and the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import uvicorn

from services.subscriber.api import CheckApp
from services.subscriber.service import SubscriberService

log = logging.getLogger("concord.subscriber")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080


async def serve(svc: SubscriberService, opts: ServeOptions) -> None:
    server = uvicorn.Server(uvicorn.Config(CheckApp(svc), host=opts.host, port=opts.port, log_level="warning",
                                           access_log=False, lifespan="off"))
    failure: list[BaseException] = []

    async def feed() -> None:
        await svc.start()
        await svc.run()

    def done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            failure.append(task.exception())  # type: ignore[arg-type]
            log.error("%s: the directive feed stopped: %s", svc.agency, task.exception())
            server.should_exit = True

    # uvicorn re-raises the signal that stopped it once it has shut down; with the
    # default SIGTERM action that would end the process before the feed is stopped.
    # Until uvicorn installs its own handlers (and after it restores these), a
    # signal asks the server to exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
    task = asyncio.create_task(feed())
    task.add_done_callback(done)
    try:
        await server.serve()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await svc.stop()
        svc.store.close()
    if failure:
        raise failure[0]


def run(svc: SubscriberService, opts: ServeOptions) -> None:
    asyncio.run(serve(svc, opts))
