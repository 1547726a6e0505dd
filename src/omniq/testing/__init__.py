"""Helpers for testing code that uses OmniQ: :class:`TestOmniQ` (``drain()``, eager mode) and
a pytest plugin (:mod:`omniq.testing.plugin`) with a fresh OmniQ per test."""

from omniq.testing.facade import AsyncTestOmniQ, TestOmniQ

__all__ = ["AsyncTestOmniQ", "TestOmniQ"]
