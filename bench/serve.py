"""The API and the simulators of the outside services, in one process without a worker:
`python -m bench.serve`, configured by BACKORDERS_* like every part of the service."""

from __future__ import annotations

import asyncio

from api.app import create_app
from cli.stack import serve
from domain.settings import Settings
from simulators.app import create_app as create_simulators


async def main() -> None:
    settings = Settings()
    simulators = await serve(
        create_simulators(settings.state_dir), "127.0.0.1", settings.simulator_port
    )
    api = await serve(create_app(settings), settings.api_host, settings.api_port)
    try:
        await asyncio.Event().wait()  # until the bench terminates this process
    finally:
        await api.stop()
        await simulators.stop()


if __name__ == "__main__":
    asyncio.run(main())
