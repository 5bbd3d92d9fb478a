"""Every module that adds commands to the ``evidence`` app; importing this registers them all.

``flows.cli.main`` imports it before running; tests that drive the CLI import ``app`` from here.
"""

from flows import (
    cli,  # noqa: F401 - keys, vault, ingest, show, dock, demo
    cli_incidents,  # noqa: F401 - link, unlink, link-feed, incident show, items list, catalog rebuild
    cli_retention,  # noqa: F401 - hold set/release, retention run, custody, fixity
    cli_retrieval,  # noqa: F401 - get, export, thumbs
)
from flows.cli_app import app

__all__ = ["app"]
