"""`jpc` commands for the ops team."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
