"""`python -m assay.api`: serve the gateway with uvicorn.

Configuration comes from ASSAY_* environment variables (see settings.py)."""

from __future__ import annotations

import argparse

import uvicorn

from .app import create_app
from .logs import configure_logging
from .settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m assay.api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
