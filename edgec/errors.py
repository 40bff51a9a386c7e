"""The errors edgec reports to its user as one line, and their exit codes."""

from __future__ import annotations


class EdgecError(Exception):
    """Bad input or an environment problem: one line saying what is wrong and what to do."""

    exit_code = 2


class CheckFailed(EdgecError):
    """The artifact was built but a check on it failed (e.g. output parity)."""

    exit_code = 1


def known(kind: str, name: str, names: list[str] | tuple[str, ...]) -> EdgecError:
    """An unknown-key error that lists the known keys."""
    return EdgecError(f"unknown {kind} {name!r}; known: {', '.join(sorted(names))}")


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
