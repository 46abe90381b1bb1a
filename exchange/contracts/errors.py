"""The root of the exchange's own errors, and the exit codes the ``exchange`` command maps them to.

Every exception class of the project derives from ``ExchangeError``, so the
command line reports any of them in one place: ``exchange: MESSAGE`` on
standard error and the class's ``exit_code`` as the exit status.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """An error the exchange describes for its operator; the message says what was wrong.

    ``exit_code`` is the command's exit status when it ends with this error:

    - 2 (the default): bad input, a configuration problem or an unmet
      precondition: change the command, the settings or the files, then run
      again;
    - 1: the work itself failed (a peer refused it, data could not be
      applied, a check found damage): running it again unchanged may not help.

    The command also exits 130 when interrupted (Ctrl-C).  ``prefix`` comes
    before the message on the command line (e.g. ``configuration error: ``).
    """

    exit_code: int = 2
    prefix: str = ""


class InvalidInput(ExchangeError, ValueError):
    """A value given on the command line or in the settings that cannot be used; the message names it.

    Also a ValueError, as these values were refused with before."""


class OperationFailed(ExchangeError):
    """The work itself failed: a peer refused it, data could not be applied or read back as expected."""

    exit_code = 1
