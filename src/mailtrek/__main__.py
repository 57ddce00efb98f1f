"""``python -m mailtrek`` runs the command line."""

from mailtrek.cli.main import main

main()
