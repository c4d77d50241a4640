"""MkDocs hooks of the documentation site.

* The CLI reference page (``cli.md``) is generated from the click commands themselves, so it
  cannot drift from ``bench --help``: its marker line is replaced by every command's help.
* The methods page's "Deviations from the papers" is each method module's ``Note:`` section,
  read from the installed code.
* The committed figures and reports under ``results/`` (benchmarks, leaderboards) become files
  of the site, so pages link them where they lie (``results/benchmarks/...``) and a broken link
  to them fails the strict build.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import click
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ("results/benchmarks", "results/leaderboard/ptb-xl-subset-1987-records")
MARKER = "<!-- bench cli reference -->"
NOTES_MARKER = "<!-- bench method notes -->"
WIDTH = 100  # help text wrapped as on a 100-column terminal, whatever builds the site


def on_files(files, config):
    for folder in RESULTS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                rel = str(path.relative_to(ROOT))
                files.append(File(rel, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_reference())
    if NOTES_MARKER in markdown:
        markdown = markdown.replace(NOTES_MARKER, method_notes())
    return markdown


def method_notes() -> str:
    """Each registered method's ``Note:`` (its deviations from the paper), as written in its
    module docstring; Sphinx roles become code spans."""
    from bench.method import METHODS

    sections = []
    for name in METHODS.names():
        module = METHODS.get(name).__module__
        doc = sys.modules[module].__doc__ or ""
        note = textwrap.dedent(doc.split("Note:", 1)[1]).strip() if "Note:" in doc else "none"
        note = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", note).replace("``", "`")
        sections.append(f"### `{name}`\n\nFrom `{module}`:\n\n{note}\n")
    return "\n".join(sections)


def cli_reference() -> str:
    """Every command's ``--help``, group by group, in the order ``bench --help`` lists them."""
    from bench.cli import cli

    sections: list[str] = []

    def walk(command: click.Command, path: list[str], parent) -> None:
        ctx = click.Context(
            command, info_name=path[-1], parent=parent, terminal_width=WIDTH,
            max_content_width=WIDTH,
        )  # fmt: skip
        sections.append(f"## `{' '.join(path)}`\n\n```text\n{command.get_help(ctx)}\n```\n")
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name], ctx)

    walk(cli, ["bench"], None)
    return "\n".join(sections)
