"""pnrelight: relighting toolkit (RTI, portrait avatars, virtual light stages).

The package imports without torch; learning code lives in modules that
import torch themselves (``pnrelight.rti.neural``, ``pnrelight.avatar.fit``).
"""
__version__ = "0.1.0"

from .errors import InputError  # noqa: F401
