"""The moto SimpleDB of the store tests (conditional puts, DeleteAttributes and the store's two Selects), which the
server runs on when the stack's policy is compared with what it calls."""

from tests.store.conftest import strict_moto  # noqa: F401 - a session fixture, shared
