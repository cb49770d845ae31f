"""The two exception types the CLI reports in one line: UserError (exit 2) and Fault (exit 1)."""


class UserError(Exception):
    """A mistake the user can fix (bad config, missing file, wrong environment).

    The message is one line that names the problem and, where possible, the fix.
    """


class UnreadableFile(UserError):
    """A file that cannot be opened as a regular file of a sensible size (missing, no permission,
    a directory or FIFO, too large): unlike a damaged file, its content was never looked at."""


class Fault(Exception):
    """Something failed that is not the user's mistake (a full disk mid-training, a run
    directory deleted under a running run). The message is one line saying what happened and
    what was kept; the CLI exits with code 1."""
