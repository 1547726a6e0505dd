"""Workflows: chains, groups and chords, built from task dependencies.

::

    from omniq.workflows import call, chain, group, chord

    wf = chain(call(fetch, {"url": u}), call(parse), call(store))   # each result -> the next
    wf = group(call(resize, args=(img, 1)), call(resize, args=(img, 2)))  # results in order
    wf = chord([call(count, args=(p,)) for p in pages], call(total))  # total([n1, n2, ...])
    final_id = oq.enqueue_workflow(wf)
    oq.get_result(final_id, wait=True).value

A workflow becomes ordinary tasks, all stored in one atomic step: each step depends on the step
before it (``depends_on``) and takes that step's result as its first positional argument (a
group's results as one list, in the group's order). A step whose dependency fails, is cancelled
or expires is cancelled, and so is everything after it. Because the whole graph is stored
before anything runs, a worker crash mid-workflow loses nothing: the running step is retried
when its lease lapses and the rest waits in storage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from omniq.errors import ConfigError
from omniq.models import Task

__all__ = ["Call", "Chain", "Chord", "Group", "call", "chain", "chord", "collect", "group"]


class Call(msgspec.Struct, frozen=True):
    """One step: a function, its arguments and its enqueue options."""

    func: Any
    func_args: dict[str, Any] | None = None
    args: tuple[Any, ...] = ()
    options: dict[str, Any] = {}


class Chain(msgspec.Struct, frozen=True):
    """Steps run one after another, each getting the previous result first."""

    steps: tuple[Any, ...]


class Group(msgspec.Struct, frozen=True):
    """Steps run in parallel; the group's result is the list of their results, in order."""

    members: tuple[Any, ...]


class Chord(msgspec.Struct, frozen=True):
    """A group, then a callback that gets the list of the group's results."""

    header: Group
    body: Any


Node = Call | Chain | Group | Chord

_NOT_OPTIONS = frozenset({"depends_on", "func", "func_args", "args"})


def call(
    func: Callable[..., Any] | str,
    func_args: Mapping[str, Any] | None = None,
    *,
    args: Sequence[Any] = (),
    **options: Any,
) -> Call:
    """A workflow step; ``options`` are :meth:`enqueue` options (queue_name, priority, ...)."""
    bad = set(options) & _NOT_OPTIONS
    if bad:
        raise ConfigError(f"call(): {sorted(bad)} cannot be given here")
    return Call(func, dict(func_args) if func_args else None, tuple(args), dict(options))


def chain(*steps: Node | Iterable[Node]) -> Chain:
    """Steps in sequence: ``chain(a, b, c)`` runs ``c(b(a()))``."""
    flat = _flatten(steps, "chain")
    return Chain(tuple(flat))


def group(*members: Node | Iterable[Node]) -> Group:
    """Steps in parallel; the result is the list of their results."""
    return Group(tuple(_flatten(members, "group")))


def chord(header: Group | Iterable[Node], body: Node) -> Chord:
    """``chord(group_or_steps, callback)``: the callback gets the group's list of results."""
    if not isinstance(header, Group):
        header = group(*header)
    _check_node(body, "chord callback")
    return Chord(header, body)


def collect(values: list[Any]) -> list[Any]:
    """The step that turns a group's results into one task's result (a list)."""
    return values


def build_workflow(queue: Any, workflow: Node) -> tuple[list[Task], str]:
    """The tasks of a workflow (no I/O) and the id of the task whose result is its result."""
    _check_node(workflow, "workflow")
    tasks: list[Task] = []
    output = _build(queue, workflow, None, tasks)
    if output[0] == "list":
        output = ("one", [_add(queue, Call(collect), output, tasks)])
    return tasks, output[1][0]


_Output = tuple[str, list[str]]  # ("one", [id]) or ("list", [ids])


def _build(queue: Any, node: Node, given: _Output | None, tasks: list[Task]) -> _Output:
    if isinstance(node, Call):
        return ("one", [_add(queue, node, given, tasks)])
    if isinstance(node, Chain):
        output = given
        for step in node.steps:
            output = _build(queue, step, output, tasks)
        assert output is not None
        return output
    if isinstance(node, Group):
        ids = []
        for member in node.members:
            output = _build(queue, member, given, tasks)
            if output[0] == "list":  # a nested group: its list is one value of this one
                output = ("one", [_add(queue, Call(collect), output, tasks)])
            ids.extend(output[1])
        return ("list", ids)
    assert isinstance(node, Chord)
    return _build(queue, node.body, _build(queue, node.header, given, tasks), tasks)


def _add(queue: Any, step: Call, given: _Output | None, tasks: list[Task]) -> str:
    task = queue.build_task(
        step.func,
        step.func_args,
        args=step.args,
        depends_on=given[1] if given else None,
        _inputs=given,
        **step.options,
    )
    tasks.append(task)
    return task.id


def _flatten(items: Sequence[Any], what: str) -> list[Node]:
    flat: list[Node] = []
    for item in items:
        if isinstance(item, (Call, Chain, Group, Chord)):
            flat.append(item)
        elif isinstance(item, Iterable) and not isinstance(item, (str, bytes, Mapping)):
            flat.extend(_flatten(list(item), what))
        else:
            raise ConfigError(
                f"{what}() takes steps made with call(), chain(), group() or chord(), got {item!r}"
            )
    if not flat:
        raise ConfigError(f"{what}() needs at least one step")
    return flat


def _check_node(node: Any, what: str) -> None:
    if not isinstance(node, (Call, Chain, Group, Chord)):
        raise ConfigError(
            f"{what} must be made with call(), chain(), group() or chord(), got {node!r}"
        )
