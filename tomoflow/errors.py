"""Errors that reach the user as one line naming the file and the problem."""

from __future__ import annotations

import os


class TomoflowError(Exception):
    """Base class for errors tomoflow reports to the user without a traceback."""


class InputError(TomoflowError):
    """Bad input: ``str(err)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class StoreError(InputError):
    """A store that cannot be opened or lacks what was asked for."""
