"""The one exception type for user mistakes: the CLI prints its message and exits with code 2."""


class UserError(Exception):
    """A mistake the user can fix (bad config, missing file, wrong environment).

    The message is one line that names the problem and, where possible, the fix.
    """
