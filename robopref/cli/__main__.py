"""``python -m robopref.cli`` runs the ``robopref`` command."""

from robopref.cli import main

main()
