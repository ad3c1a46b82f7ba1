"""The one kind of error a user can fix: a bad setting, a missing or damaged file, a folder that
holds something else. Its message is one line naming the setting or file and what to do; the
scripts in code/ print it and exit 2. Programming errors stay ordinary exceptions."""


class UserError(RuntimeError):
    """A problem the user can fix; one-line message."""
