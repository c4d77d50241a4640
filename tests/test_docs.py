"""The documentation is tested: the site builds in strict mode (a broken link, anchor or page
fails it), code fences are balanced, and every ``bench ...`` command line shown in README.md and
docs/ is parsed by the real CLI (an unknown command or option fails)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
         "-d", str(site)],
        capture_output=True, text=True, timeout=300, cwd=root,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip


def test_the_site_builds_strictly_with_the_generated_cli_reference(tmp_path):
    built = _build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    cli_page = (tmp_path / "site" / "cli" / "index.html").read_text()
    from bench.cli import cli

    for name in cli.list_commands(click.Context(cli)):  # every command has its section
        assert f"bench {name}</code>" in cli_page, name
    assert "--shard" in cli_page and "--unchecked-data" in cli_page
    methods = (tmp_path / "site" / "methods" / "index.html").read_text()
    from bench.method import METHODS

    for name in METHODS.names():  # every method's deviations, read from its module
        assert f'id="{name}"' in methods, name
    assert "EMA target encoder (as in I-JEPA)" in methods  # methods/jepa.py's Note:
    extending = (tmp_path / "site" / "extending" / "index.html").read_text()
    assert "VICRegLoss" in extending  # the README's example, included, not copied


def _copy_site_sources(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "docs", dest / "docs")
    for folder in ("results/benchmarks", "results/leaderboard/ptb-xl-subset-1987-records"):
        shutil.copytree(ROOT / folder, dest / folder)
    return dest


@pytest.mark.parametrize(
    "broken",
    ["[a page](no-such-page.md)", "[an anchor](data.md#no-such-heading)",
     "[a figure](results/benchmarks/no-such-file.md)"],
)  # fmt: skip
def test_a_broken_link_fails_the_build(tmp_path, broken):
    root = _copy_site_sources(tmp_path / "src")
    page = root / "docs" / "index.md"
    page.write_text(page.read_text() + f"\nSee {broken}.\n")
    built = _build(root, tmp_path / "site")
    assert built.returncode != 0 and "Aborted with" in built.stderr + built.stdout


def _fences(text: str) -> list[tuple[int, str]]:
    return [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.startswith("```")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_fences_are_balanced(page):
    """Fences alternate between an opener (``` and an optional language) and a bare closer; a
    closer followed by text (```` ``` These records... ````) hides the rest of the page as code."""
    opened = None
    for number, line in _fences(page.read_text()):
        if opened is None:
            assert re.fullmatch(r"```[\w+-]*", line), f"{page.name}:{number}: bad opener {line!r}"
            opened = number
        else:
            assert line == "```", f"{page.name}:{number}: a closer with text: {line!r}"
            opened = None
    assert opened is None, f"{page.name}:{opened}: a fence that is never closed"


def test_a_closer_with_text_is_caught():
    with pytest.raises(AssertionError):
        bad = Path("bad.md")
        opened = None
        for number, line in _fences("```bash\nbench tasks\n``` These records\n"):
            if opened is None:
                opened = number
            else:
                assert line == "```", f"{bad}:{number}"


# --------------------------------------------------------------------------- command lines
def _shell_lines(block: str) -> list[str]:
    """Command lines of a shell block: continuations joined, comments dropped, simple variable
    assignments of the block substituted, other variables given a placeholder value."""
    joined = re.sub(r"\\\n\s*", " ", block)
    variables: dict[str, str] = {}
    out = []
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith("#") or not line:
            continue
        for assignment in re.findall(r'(?:^|;\s*|export\s+)(\w+)=("[^"]*"|[^\s;]+)', line):
            variables[assignment[0]] = assignment[1].strip('"')
        line = re.sub(r'"?\$\{[^}]*\}"?', "X", line)
        line = re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), "1"), line)
        out.append(line)
    return out


def _bench_commands(text: str) -> list[str]:
    """``bench ...`` invocations: in shell blocks (also after ``.venv/bin/``, ``-m``, ``;``,
    ``do``) and in inline code spans (a synopsis's ``[...]`` and ``A\\|B`` reduced to one)."""
    found: list[str] = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        for line in _shell_lines(block):
            for part in re.split(r";|\bdo\b|&&", line):
                match = re.search(r"(?:^|\s|/|-m\s+)bench(\s.*|$)", part.strip())
                if match and not re.match(r"\s*[=/.]", match.group(1) or " "):
                    found.append("bench" + match.group(1))
    for span in re.findall(r"(?<!`)`(bench [^`]+)`(?!`)", text):
        synopsis = re.sub(r"\\\|[^\s\]]*", "", span)  # M\|all -> M
        found.append(synopsis.replace("[", " ").replace("]", " "))
    return found


def _parse(argv: list[str]) -> None:
    """Parse ``argv`` (after ``bench``) with the real commands, without running anything."""
    from bench.cli import cli

    ctx = cli.make_context("bench", list(argv))
    command: click.Command = cli
    while isinstance(command, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            return
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)


def _check(line: str) -> str | None:
    """None if the CLI accepts ``line``'s commands and options (a placeholder value such as N or
    RECORD may fail its type), else the CLI's complaint."""
    argv = shlex.split(line)[1:]
    if argv[:1] == ["..."]:  # `bench ... --option`: an option every command takes, not a line
        return None
    argv = [t for t in argv if t != "..."]
    try:
        _parse(argv)
    except click.exceptions.Exit:  # --help
        return None
    except (click.BadParameter, click.MissingParameter):
        return None
    except click.UsageError as exc:
        return exc.format_message()
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_bench_command_line_shown_is_accepted_by_the_cli(page):
    commands = _bench_commands(page.read_text())
    bad = [(c, why) for c in commands if (why := _check(c))]
    assert not bad, "\n".join(f"{c!r}: {why}" for c, why in bad)


def test_the_command_check_can_fail():
    assert "No such command" in _check("bench nosuchcommand")
    assert "No such option" in _check("bench run --method jepa --no-such-option 3")
    assert _check("bench run --method jepa --seeds N") is None  # a placeholder value
    text = (
        "Run `bench run --method M\\|all [--shard K/N]` or\n```bash\nbench tasks --task all\n```\n"
    )
    assert _bench_commands(text) == [
        "bench tasks --task all",
        "bench run --method M  --shard K/N ",
    ]


def test_the_command_table_says_what_the_help_says():
    """Each row of README's command table starts with its command's one-line help (the line
    `bench --help` shows), so the two cannot say different things."""
    from bench.cli import cli

    readme = (ROOT / "README.md").read_text()
    table = readme.split("| command | what it does |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `bench ([^`]*)` \| (.*) \|$", table, re.M)
    assert len(rows) >= 16
    seen = set()
    for synopsis, description in rows:
        command, ctx, path = cli, click.Context(cli), []
        for name in synopsis.split():  # down the groups while the words are subcommands
            sub = command.get_command(ctx, name) if isinstance(command, click.Group) else None
            if sub is None:
                break
            command, ctx = sub, click.Context(sub, parent=ctx)
            path.append(name)
        short = command.get_short_help_str(limit=200)
        assert description.startswith(short), f"bench {path}: {description!r} vs {short!r}"
        seen.add(command.name)
    leaves = {n for n in cli.list_commands(click.Context(cli)) if n != "data"}
    assert leaves <= seen  # every command has its row
