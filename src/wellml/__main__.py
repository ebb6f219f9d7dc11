"""``python -m wellml`` runs the CLI."""

from wellml.cli import main

main()
