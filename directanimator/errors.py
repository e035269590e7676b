"""The one exception type users see.

Anything the user can fix (a missing file, a corrupt video, no person in the photo, an unknown config
key) raises `InputError` with a message that names the thing and, where there is one, the fix. The
CLI prints it as a single line and exits non-zero; everything else is a bug and says so.
"""


class InputError(Exception):
    """Bad input the user can fix. The message is shown as is, on one line."""


class TrainingError(RuntimeError):
    """A training run that cannot go on (e.g. too many non-finite losses in a row)."""
