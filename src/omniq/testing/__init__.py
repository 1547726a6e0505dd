"""Helpers for testing code that uses OmniQ: :class:`TestOmniQ` (``drain()``, eager mode) and
a pytest plugin (:mod:`omniq.testing.plugin`) with a fresh OmniQ per test."""

from omniq.testing._twins import TestOmniQ
from omniq.testing.facade import AsyncTestOmniQ

__all__ = ["AsyncTestOmniQ", "TestOmniQ"]
