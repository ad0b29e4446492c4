"""The portal as a process (`backbone portal`): serves the app on the configured address until
SIGTERM or SIGINT, and writes its URL to the run state for the demo's progress display."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from backbone.runstate import write_state
from backbone.settings import Settings
from portal.app import make_app

log = logging.getLogger(__name__)


async def start_portal(settings: Settings, app: web.Application | None = None) -> tuple[web.AppRunner, str]:
    """Start the app on settings.bind_host:portal_port (0: a free port); returns the runner and URL."""
    runner = web.AppRunner(app or make_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.bind_host, settings.portal_port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - aiohttp gives no public accessor
    return runner, f"http://{settings.bind_host}:{port}/"


async def _serve(settings: Settings) -> None:
    runner, url = await start_portal(settings)
    write_state(settings.run_dir, portal_url=url)
    log.warning("portal running: %s", url)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)


def run_portal(settings: Settings) -> None:
    asyncio.run(_serve(settings))
