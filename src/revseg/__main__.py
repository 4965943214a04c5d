"""``python -m revseg`` runs the CLI."""

from revseg.cli.main import main

main()
