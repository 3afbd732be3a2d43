"""Errors that the command line reports as one line instead of a traceback."""


class LitvisionError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataNotFoundError(LitvisionError):
    """A dataset is not on disk and could not be downloaded."""
