"""The one base class of errors a user can fix: bad input, not a bug.

Every command catches :class:`UserError` and prints its message as one line, with exit code 2
and no traceback (``oreal.cli.fail``). The subclasses live with the code that raises them:
``ConfigError``, ``DataError``, ``TemplateError``, ``RewardError``, ``BuildError``,
``CheckpointError``, ``EvalInputError``, ``InspectError``. A message names what is wrong and,
where it can, how to fix it.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """Input that cannot work (a config, a file, a path, an argument); the message says why."""
