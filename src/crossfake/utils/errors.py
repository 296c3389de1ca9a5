"""The one exception type a user sees.

Every error caused by the user's input (a wrong path, a malformed config, a table without the expected
column) is raised as :class:`CrossfakeError` with a message that says what was expected and where. The
CLI prints such errors without a traceback and exits with status 2; anything else is a bug and keeps its
traceback.
"""


class CrossfakeError(Exception):
    """An error in the user's input or environment, with a message meant for a person."""
