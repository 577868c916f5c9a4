"""The `shadowdesk` command line: one module per command group, sharing `api.cli.common`."""

from __future__ import annotations

import typer

from api.cli.bots import bots_app
from api.cli.chat import chat
from api.cli.datasets import datasets_app, plan
from api.cli.demo import demo_loop
from api.cli.documents import docs_app, ingest
from api.cli.keys import keys_app
from api.cli.releases import releases_app
from api.cli.server import db_app, serve, worker
from api.cli.staff import staff_app
from api.cli.training import train_command

app = typer.Typer(help="Shadowdesk: support chatbots on your own documents.", no_args_is_help=True)
app.command()(serve)
app.command()(worker)
app.command()(ingest)
app.command()(chat)
app.command()(plan)
app.command(name="train")(train_command)
app.command(name="demo-loop")(demo_loop)
app.add_typer(bots_app, name="bots")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(docs_app, name="documents")
app.add_typer(releases_app, name="releases")
app.add_typer(staff_app, name="staff")
app.add_typer(datasets_app, name="datasets")
