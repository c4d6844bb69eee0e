"""The typer CLI: thin, maps sr_cli.errors to one-line messages and exit codes. Only here: typer, rich."""
