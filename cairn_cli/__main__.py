"""`python -m cairn_cli`: the `cairn` command."""

from cairn_cli.main import main

main()
