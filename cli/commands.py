"""Every module that adds commands to the ``evidence`` app; importing this registers them all.

``cli.main.main`` imports it before running; tests that drive the CLI import ``app`` from here.
"""

from cli import (
    incidents,  # noqa: F401 - link, unlink, link-feed, incident show, items list, catalog rebuild
    retention,  # noqa: F401 - hold set/release, retention run, custody, fixity
    retrieval,  # noqa: F401 - get, export, thumbs
    serve,  # noqa: F401 - serve (the investigators' portal)
    station,  # noqa: F401 - keys, vault, ingest, show, dock, demo
    users,  # noqa: F401 - users add, list, reset-password, remove
)
from cli.app import app

__all__ = ["app"]
