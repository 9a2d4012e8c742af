"""The store: the SQL database that holds every job. Only this package imports a driver."""

from __future__ import annotations

from taskmill.store.base import Listener, Outcome, Store, open_store

__all__ = ["Listener", "Outcome", "Store", "open_store"]
