"""The ``evidence`` command: the front door for officers' docks, investigators and storage admins.

Errors from the project's hierarchy become one line on stderr and the error's exit code, never a
traceback.
"""

from __future__ import annotations

import sys

from cli.app import app
from evidence.errors import EvidenceError
from flows.console import err, styled, visible_message


def main() -> None:
    import cli.commands  # noqa: F401 - registers the commands of every area on the shared app

    try:
        app()
    except EvidenceError as error:
        # messages quote what people and devices supplied (names, references, paths)
        err.print(styled("error:", "red", f" {visible_message(str(error))}"), highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted; re-run the same command to finish (nothing is lost or duplicated)")
        sys.exit(130)
