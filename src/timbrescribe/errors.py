"""Errors the user caused (bad input, bad options): the CLI prints them as one line, exit status 2."""


class UserError(Exception):
    """Raised for problems with the user's input or options, never for bugs."""
