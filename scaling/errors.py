"""Bad input: a spec, a flag, a store. The message is the one line the user sees; exit code 2."""


class InputError(ValueError):
    pass


class UsageError(InputError):
    """A bad flag or argument on the command line."""


def first_line(exc: BaseException) -> str:
    """An exception's first line (MLflow's and Ray's run to many), else its type's name."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
