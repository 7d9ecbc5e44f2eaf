"""Exceptions that carry a message meant for the user.

Every error a user can cause (bad file, unknown element, unusable checkpoint) is a :class:`CGCNNError`, so the
CLI and the app can show its one-line message instead of a traceback.
"""

from __future__ import annotations


class CGCNNError(Exception):
    """Base class: the message is complete and fit to show to a user as it is."""


class CrystalInputError(CGCNNError):
    """A crystal file or structure that cannot be turned into a graph (malformed, disordered, empty)."""


class UnknownElementError(CrystalInputError):
    """A species outside the element feature table (Z = 1..100 for the original table)."""


class NoNeighborsError(CrystalInputError):
    """Some atom has no neighbour inside the cutoff radius, so the convolution has nothing to read."""


class CheckpointError(CGCNNError):
    """A file that is not a loadable CGCNN checkpoint (wrong content, unsafe pickle, wrong version)."""
