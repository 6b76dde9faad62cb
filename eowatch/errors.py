"""The exception root: every error eowatch raises on purpose derives from EowatchError."""


class EowatchError(Exception):
    """Base of all eowatch errors; messages tell the operator what to do."""
