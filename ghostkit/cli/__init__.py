"""The ``ghostkit`` command: one file per command group, registered here. ``main(argv)`` runs in-process and returns
the exit code.

A user mistake (``GhostkitError``, bad option values) prints one line and exits with code 2, never a traceback.
Start-up imports only typer, rich and the plain option tables (``TrainConfig``, the task registry): ``--help`` and
usage errors answer without torch; each command imports what it needs when it runs. A new command: a function in
the group's file (or a new ``cli/<group>.py``), listed in ``COMMANDS`` below.
"""

from __future__ import annotations

import functools
import sys
import warnings

import typer

from ..errors import GhostkitError
from .app import serve_app
from .deploy import benchmark, export
from .info import info
from .predict import predict
from .track import track
from .train import train, val

__all__ = ["main", "app", "COMMANDS"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GhostNet toolkit: train, val, predict, track, export, benchmark, info, app.")
COMMANDS = (train, val, predict, track, info, export, benchmark)
for command in COMMANDS:
    app.command()(command)
app.command(name="app")(serve_app)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings for users in one line, without the source line of the code that raised them."""
    return f"ghostkit: warning: {message}\n"


class _Interrupted(Exception):
    """Ctrl-C inside a command, carried past typer, which turns KeyboardInterrupt into a bare exit code 130."""


def _interruptible(command):
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt as e:  # training's RunInterrupted says where it stopped and how to resume
            raise _Interrupted(str(e) or "interrupted") from None

    return run


for _info in app.registered_commands:
    _info.callback = _interruptible(_info.callback)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    format_warning = warnings.formatwarning  # not restored by catch_warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.formatwarning = _format_warning
            result = app(args=argv, prog_name="ghostkit", standalone_mode=False)
    except GhostkitError as e:
        print(f"ghostkit: error: {e}", file=sys.stderr)
        return 2
    except _Interrupted as e:
        print(f"ghostkit: {e}", file=sys.stderr)
        return 130
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("ghostkit: aborted", file=sys.stderr)
        return 1
    except typer.exceptions.TyperException as e:  # usage errors: bad option values, unknown commands
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            return 0
        e.show()
        return e.exit_code
    except KeyboardInterrupt:  # outside a command (typer turns it into 130 inside one)
        print("ghostkit: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = format_warning
    return result if isinstance(result, int) else 0
