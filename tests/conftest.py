"""Suite-wide ordering: the test that restarts the Docker engine runs after all the others,
so no other test's containers or hub are caught by the restart."""

from __future__ import annotations


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("restarts_engine") is not None)
