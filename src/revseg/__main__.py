"""``python -m revseg`` runs the CLI, under the name users type (usage lines, error hints)."""

from revseg.cli.main import main

main(prog_name="revseg")
