"""``python -m cli`` runs the ``evidence`` command (as the installed script does)."""

from cli.main import main

main()
