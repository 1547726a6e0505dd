"""The records contract (schedules and heartbeats live here), on every backend: versions,
compare-and-set under concurrent writers, kinds and projects kept apart."""

from __future__ import annotations

import asyncio

from conftest import Storages


async def test_put_get_list_delete(storages: Storages) -> None:
    q = storages.queue
    assert await q.get_record("schedule", "a") is None
    assert await q.list_records("schedule") == []
    assert await q.put_record("schedule", "b", b"B1") == 1
    assert await q.put_record("schedule", "a", b"A1") == 1
    assert await q.put_record("schedule", "a", b"A2") == 2
    await q.put_record("worker", "a", b"W")
    assert await q.get_record("schedule", "a") == (2, b"A2")
    assert await q.list_records("schedule") == [("a", 2, b"A2"), ("b", 1, b"B1")]
    assert await q.list_records("worker") == [("a", 1, b"W")]
    assert await q.delete_record("schedule", "a") is True
    assert await q.delete_record("schedule", "a") is False
    assert await q.get_record("schedule", "a") is None
    assert await q.get_record("worker", "a") == (1, b"W")


async def test_swap_is_compare_and_set(storages: Storages) -> None:
    q = storages.queue
    assert await q.swap_record("schedule", "s", b"v1", 0) == 1
    assert await q.swap_record("schedule", "s", b"again", 0) is None  # exists already
    assert await q.swap_record("schedule", "s", b"stale", 5) is None
    assert await q.swap_record("schedule", "s", b"v2", 1) == 2
    assert await q.get_record("schedule", "s") == (2, b"v2")
    await q.delete_record("schedule", "s")
    assert await q.swap_record("schedule", "s", b"v1", 2) is None
    assert await q.swap_record("schedule", "s", b"new", 0) == 1


async def test_concurrent_swaps_have_one_winner(storages: Storages) -> None:
    q = storages.queue
    await q.put_record("schedule", "race", b"start")
    for version in range(1, 6):
        outcomes = await asyncio.gather(
            *(q.swap_record("schedule", "race", f"w{i}".encode(), version) for i in range(8))
        )
        winners = [o for o in outcomes if o is not None]
        assert winners == [version + 1]
    version, data = await q.get_record("schedule", "race")
    assert version == 6 and data.startswith(b"w")


async def test_records_are_isolated_by_project(spec, project) -> None:
    one, other = spec.make_queue(project), spec.make_queue(project + "-other")
    try:
        await one.put_record("schedule", "k", b"one")
        assert await other.get_record("schedule", "k") is None
        assert await other.list_records("schedule") == []
        assert await other.swap_record("schedule", "k", b"other", 0) == 1
        assert await one.get_record("schedule", "k") == (1, b"one")
    finally:
        await one.close()
        await other.close()
