"""Which flags a destination is expected to keep, for comparing source and copy.

A destination that cannot hold a flag is not "different" for lacking it: the store
declares those (``StoreFeatures.dropped_flags``), and they are left out of both sides
before flags are compared. No backend is named here.
"""

from __future__ import annotations

from mailtrek.stores.base import StoreFeatures


def comparable_flags(flags: frozenset[str], features: StoreFeatures) -> frozenset[str]:
    """Return the part of ``flags`` that a destination with ``features`` keeps."""
    dropped = features.dropped_flags
    return frozenset(f for f in flags if f.lower() not in dropped) if dropped else flags
