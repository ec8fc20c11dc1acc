"""Every option of every ``inverter-agent`` command (the adapters' too) says what it is
for, and ``--version`` prints the installed version."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version

from inverter_agent import cli


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_has_help_text():
    options = list(_options(cli._parser()))
    assert len(options) > 60  # the adapters' commands are walked too
    assert any(path == ("read",) for path, _ in options)
    missing = [" ".join(path) + " " + "/".join(a.option_strings or [a.dest])
               for path, a in options if not (a.help or "").strip()]
    assert not missing, missing


def test_version_prints_the_installed_version():
    done = subprocess.run([sys.executable, "-m", "inverter_agent.cli", "--version"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert done.stdout.strip() == f"inverter-agent {version('inverter-agent')}"
