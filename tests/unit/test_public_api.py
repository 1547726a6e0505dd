"""Each public package's ``__all__`` lists exactly its public names, and they import."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["omniq", "omniq.queue", "omniq.storage", "omniq.workers", "omniq.models"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_matches_public_names(name: str) -> None:
    module = importlib.import_module(name)
    for exported in module.__all__:
        assert hasattr(module, exported), exported
    public_classes = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and isinstance(value, type)
        and getattr(value, "__module__", "") == name
    }
    assert public_classes <= set(module.__all__), public_classes - set(module.__all__)
