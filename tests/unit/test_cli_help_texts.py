"""Every argument of every ``boundaries`` command has a help text, and every command's ``--help`` names the
``BOUNDARIES_*`` settings it reads (boundaries_cli/help_texts.py): the argparse tree is walked, so a command
or option added later is covered too."""

from __future__ import annotations

import argparse

from boundaries_cli.help_texts import COMMAND_SETTINGS, subcommands
from boundaries_cli.main import build_parser
from config.settings import Settings

ENV_OUTSIDE_SETTINGS = {"LOG_LEVEL", "DEBUG"}
"""Read with os.environ by the CLI (boundaries_cli/main.py), not fields of Settings."""


def _all_parsers(parser: argparse.ArgumentParser, path: str = "boundaries"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _all_parsers(child, f"{path} {name}")


def test_every_argument_of_every_command_has_help():
    missing = []
    for path, parser in _all_parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "arguments without help=: " + ", ".join(missing)


def test_every_command_names_the_settings_it_reads_and_they_exist():
    parser = build_parser()
    commands = dict(subcommands(parser))
    assert {"worker", "serve", "dlq list", "doctor"} <= set(commands)
    silent = [path for path, p in commands.items()
              if path not in COMMAND_SETTINGS and "BOUNDARIES_" not in p.format_help()]
    assert not silent, f"commands whose --help names no setting (add them to COMMAND_SETTINGS): {silent}"
    fields = {f.upper() for f in Settings.model_fields}
    for path, names in COMMAND_SETTINGS.items():
        for n in names:
            known = (any(f.startswith(n[:-1]) for f in fields) if n.endswith("*") else n in fields)
            assert known or n in ENV_OUTSIDE_SETTINGS, f"{path}: BOUNDARIES_{n} is not a setting"
    for path, p in commands.items():
        if path not in COMMAND_SETTINGS:
            continue
        text = p.format_help()
        for n in COMMAND_SETTINGS[path]:
            assert f"BOUNDARIES_{n}" in " ".join(text.split()), (path, n)
