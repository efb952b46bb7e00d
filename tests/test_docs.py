"""Documentation checks: the two READMEs stay in sync, their commands exist, links resolve, the text names CPUs
rather than work periods, and the mkdocs site (API reference from the docstrings) builds with --strict."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_ZH = ROOT / "README.zh-CN.md"
DOC_FILES = [README, README_ZH, *sorted((ROOT / "docs").rglob("*.md")), ROOT / "benchmarks" / "README.md"]

FENCE = re.compile(r"^```(\w*)\s*$")


def code_blocks(path: Path) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced code block, in order; backslash continuations joined."""
    blocks, lang, lines = [], None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = FENCE.match(line.strip())
        if match and lang is None:
            lang, lines = match.group(1) or "text", []
        elif line.strip() == "```" and lang is not None:
            blocks.append((lang, lines))
            lang = None
        elif lang is not None:
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1].rstrip() + " " + line.strip()
            else:
                lines.append(line)
    assert lang is None, f"{path.name}: unclosed code block"
    return blocks


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (shell and Python; the READMEs put no '#' inside strings)."""
    return line.split("#", 1)[0].rstrip()


def shell_commands(path: Path) -> list[str]:
    """Every `ghostkit ...` and `make ...` command in the shell code blocks, comments removed, in order."""
    commands = []
    for lang, lines in code_blocks(path):
        if lang not in ("bash", "sh", "shell", "console", "text"):
            continue
        for line in lines:
            command = strip_comment(line).strip().removeprefix("$ ")
            if re.match(r"(ghostkit|make)(\s|$)", command):
                commands.append(" ".join(command.split()))
    return commands


def python_code(path: Path) -> list[str]:
    """The code lines of the Python blocks, comments and blank lines removed (comments are translated)."""
    return [strip_comment(line) for lang, lines in code_blocks(path) if lang == "python" for line in lines
            if strip_comment(line).strip()]


def test_both_readmes_list_the_same_commands():
    english, chinese = shell_commands(README), shell_commands(README_ZH)
    assert "make demo" in english and "make test" in english
    assert len(english) >= 20, english
    missing = [c for c in english if c not in chinese]
    extra = [c for c in chinese if c not in english]
    assert not missing and not extra, f"README.zh-CN.md lacks {missing} and has {extra} that README.md does not"
    assert english == chinese, "the two READMEs list the same commands in a different order"


def test_both_readmes_show_the_same_python_code():
    assert python_code(README) == python_code(README_ZH)


def cli_options() -> dict[str, set[str]]:
    """Subcommand → every option spelling it accepts, read from the installed CLI (click under typer)."""
    import typer

    from ghostkit.cli import app

    group = typer.main.get_command(app)
    return {name: {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
            for name, command in group.commands.items()}


def test_readme_commands_exist():
    """Every documented subcommand and option is accepted by the CLI, every make target is in the Makefile."""
    options = cli_options()
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    for command in shell_commands(README):
        words = shlex.split(command.replace("[", " ").replace("]", " "))
        if words[0] == "make":
            assert words[1] in targets, f"README: make {words[1]}: no such target in the Makefile"
            continue
        if len(words) == 1:
            continue
        sub = words[1]
        if sub.startswith("--"):
            assert sub == "--help", command
            continue
        assert sub in options, f"README: `{command}`: no subcommand {sub!r} (have {sorted(options)})"
        for word in words[2:]:
            if word.startswith("--"):
                name = word.split("=", 1)[0]
                assert name in options[sub], f"README: `{command}`: {sub} has no option {name}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(path: Path):
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = (path.parent / target.split("#", 1)[0]).resolve()
        assert file.is_relative_to(ROOT), f"{path.name}: link {target} points outside the repository"
        assert file.exists(), f"{path.name}: link {target} points to a missing file"


# numbered work periods, the workplace and the project's own history have no place in its documents
NARRATION = re.compile(r"\bsessions? \d|\bthis (machine|VM|session)\b|\bshared VM\b|before this change|"
                       r"\.\./shared/|会话 ?\d|第.次会话|本机|这台机器", re.I)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_name_the_cpu_not_the_work_period(path: Path):
    hits = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if NARRATION.search(line)]
    assert not hits, f"{path.name}: {hits[:3]}"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                    reason="mkdocs / mkdocstrings not installed: pip install -e '.[docs]' (make test installs it)")
def test_mkdocs_strict_build(tmp_path: Path):
    """The API reference is generated from the docstrings; --strict turns every warning (a broken link, an
    unparsable docstring, a module that no longer exists) into a failure."""
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    reference = (site / "api" / "ghostkit" / "index.html").read_text(encoding="utf-8")
    for name in ("create_model", "load_model", "reparameterize", "train"):
        assert f'id="ghostkit.{name}"' in reference, f"the API reference lacks ghostkit.{name}"
    assert (site / "design" / "index.html").is_file() and (site / "benchmarks" / "index.html").is_file()
