"""Every module that adds commands to the ``evidence`` app; importing this registers them all.

``cli.main.main`` imports it before running; tests that drive the CLI import ``app`` from here.
"""

from cli import (
    incidents,  # noqa: F401 - link, unlink, link-feed, incident show, items list, catalog rebuild
    retention,  # noqa: F401 - hold set/release, retention run, custody, fixity
    retrieval,  # noqa: F401 - get, export, thumbs
    station,  # noqa: F401 - keys, vault, ingest, show, dock, demo
)
from cli.app import app

__all__ = ["app"]
