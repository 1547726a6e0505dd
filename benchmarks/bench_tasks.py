"""Task functions for the benchmarks (importable, so they travel by import path)."""


def noop() -> None:
    return None


async def async_noop() -> None:
    return None


async def async_sleep_10ms() -> None:
    import asyncio

    await asyncio.sleep(0.01)


def cpu_5ms() -> int:
    """About 5 ms of pure-Python work (holds the GIL)."""
    total = 0
    for i in range(60_000):
        total += i * i % 7
    return total
