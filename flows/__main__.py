"""``python -m flows`` runs the ``evidence`` command (as the installed script does)."""

from flows.cli import main

main()
