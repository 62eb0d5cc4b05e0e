"""Errors the project raises on purpose.

Every message is written for the person using the demo or the API: it says
what was wrong and what to do instead. The app shows them as they are.
"""


class VQAError(Exception):
    """Base class: anything the project raises deliberately."""


class InputError(VQAError, ValueError):
    """A bad image or question (wrong type, too big, corrupt, empty…)."""


class ModelLoadError(VQAError, OSError):
    """A backbone could not be loaded (not cached offline, unsafe weights, unknown type…)."""


class UnsupportedError(VQAError, NotImplementedError):
    """The chosen backbone cannot do what was asked (e.g. captioning with ViLT)."""
