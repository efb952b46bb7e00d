"""User-facing errors: the CLI prints them as one line and exits with code 2."""

__all__ = ["GhostkitError"]


class GhostkitError(ValueError):
    """A user mistake (bad path, bad value, wrong file). The message names the file or value and the problem."""
