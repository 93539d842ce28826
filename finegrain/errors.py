"""Errors a user can fix. The CLI prints them on one line and exits 2; anything else is a bug
and keeps its traceback."""


class FinegrainError(Exception):
    """Base class: the message names the bad file, key or value."""


class ConfigError(FinegrainError):
    """A config file or override has an unknown key, a wrong type or a bad value."""


class DataError(FinegrainError):
    """A dataset root, split file or image cannot be used."""


class CheckpointError(FinegrainError):
    """A checkpoint is missing, truncated, unsafe or does not match the model asked for."""


class TrainingError(FinegrainError):
    """Training cannot go on (e.g. a non-finite loss with the 'stop' policy)."""


class ExportError(FinegrainError):
    """An exported model does not reproduce PyTorch's logits, or the format is unknown."""
