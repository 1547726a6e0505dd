"""Task functions for the benchmarks (importable, so they travel by import path)."""


def noop() -> None:
    return None


async def async_noop() -> None:
    return None
