"""The store layer's error, below every module that raises it."""
from __future__ import annotations


class StoreError(RuntimeError):
    """A store problem; ``transient`` when retrying later may succeed (the store was unreachable)."""

    def __init__(self, *args, transient: bool = False):
        super().__init__(*args)
        self.transient = transient
