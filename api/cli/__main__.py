"""`python -m api.cli …` runs the `shadowdesk` command line."""

from api.cli import app

app()
