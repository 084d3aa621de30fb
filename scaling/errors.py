"""Bad input: a spec, a flag, a store. The message is the one line the user sees; exit code 2."""


class InputError(ValueError):
    pass


class UsageError(InputError):
    """A bad flag or argument on the command line."""
