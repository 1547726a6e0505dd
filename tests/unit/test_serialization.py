"""Serialization: MessagePack for plain values, tagged dill for the rest, signing, refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools

import pytest
import taskfns

from omniq.errors import SerializationError, SignatureError
from omniq.models import TaskError, TaskResult, TaskStatus
from omniq.serialization import Serializer


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_plain_and_rich_values_round_trip_with_their_types() -> None:
    s = Serializer()
    value = {
        "n": 1,
        "f": 1.5,
        "s": "x",
        "b": b"\x00",
        "none": None,
        "list": [1, [2, {"k": True}]],
        "tuple": (1, 2),
        "set": {3},
        "when": dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        "point": Point(1, 2),
        "big": 2**70,
    }
    assert s.decode_value(s.encode_value(value)) == value
    decoded = s.decode_value(s.encode_value(value))
    assert type(decoded["tuple"]) is tuple and type(decoded["point"]) is Point


def test_functions_travel_by_import_path_when_possible() -> None:
    s = Serializer()
    payload = s.encode_call(taskfns.add, (1,), {"b": 2})
    assert b"taskfns:add" in payload
    func, args, kwargs = s.decode_call(payload)
    assert func is taskfns.add and func(*args, **kwargs) == 3


def test_lambdas_and_closures_travel_by_value() -> None:
    s = Serializer()
    offset = 10
    func, args, _ = s.decode_call(s.encode_call(lambda x: x + offset, (1,)))
    assert func(*args) == 11
    partial = functools.partial(taskfns.add, 5)
    func, args, _ = s.decode_call(s.encode_call(partial, (1,)))
    assert func(*args) == 6


def test_import_strings_are_resolved_at_run_time() -> None:
    s = Serializer()
    func, _, _ = s.decode_call(s.encode_call("taskfns:add"))
    assert func is taskfns.add
    with pytest.raises(SerializationError, match="cannot import module 'nope_mod'"):
        s.decode_call(s.encode_call("nope_mod:f"))
    with pytest.raises(SerializationError, match="has no 'missing'"):
        s.decode_call(s.encode_call("taskfns.missing"))


def test_unencodable_argument_is_named() -> None:
    s = Serializer()
    with pytest.raises(SerializationError, match=r"argument 'gen' of type generator"):
        s.encode_call(taskfns.noop, (), {"gen": (i for i in range(2))})
    with pytest.raises(SerializationError, match="positional argument 1"):
        s.encode_call(taskfns.noop, (1, (i for i in range(2))))


def test_signed_pickles_and_refusals() -> None:
    signed, other, plain = Serializer("k1"), Serializer("k2"), Serializer()
    payload = signed.encode_call(taskfns.noop, ((1, 2),))
    assert signed.decode_call(payload)[1] == [(1, 2)]
    with pytest.raises(SignatureError, match="signature"):
        other.decode_call(payload)
    with pytest.raises(SignatureError, match="unsigned"):
        signed.decode_call(plain.encode_call(taskfns.noop, ((1, 2),)))
    tampered = payload[:-1] + bytes([payload[-1] ^ 1])
    with pytest.raises(SerializationError):
        signed.decode_call(tampered)
    no_pickle = Serializer(allow_pickle=False)
    assert no_pickle.decode_call(no_pickle.encode_call(taskfns.add, (1, 2)))[1] == [1, 2]
    with pytest.raises(SerializationError, match="allow_pickle=False"):
        no_pickle.encode_call(taskfns.noop, ((1, 2),))
    with pytest.raises(SerializationError, match="allow_pickle=False"):
        no_pickle.decode_call(plain.encode_call(taskfns.noop, ((1, 2),)))


def test_corrupt_payloads_raise_serialization_errors() -> None:
    s = Serializer()
    for junk in (b"", b"\xc1", b"\x93\x01", s.encode_value([1, 2, 3])):
        with pytest.raises(SerializationError, match="corrupt"):
            s.decode_call(junk)


def test_results_round_trip() -> None:
    s = Serializer()
    result = TaskResult(
        task_id="t",
        status=TaskStatus.FAILED,
        value=(1, {2}),
        error=TaskError(type="E", message="m", traceback="tb"),
        attempts=2,
    )
    assert s.decode_result(s.encode_result(result, "p"), "p", "t") == result


def test_modules_referenced_by_value_functions_travel_by_name() -> None:
    import omniq

    def uses_module() -> object:
        return omniq.current_task()

    s = Serializer()
    payload = s.encode_call(uses_module)
    assert len(payload) < 2000  # the omniq package itself is not in the pickle
    func, _, _ = s.decode_call(payload)
    assert func() is None


def test_sealed_payloads_are_bound_to_their_use() -> None:
    keyed, body = Serializer("k1"), Serializer().encode_call(taskfns.add, (1, 2))
    sealed = keyed.seal(body, "task", "p", "A")
    assert keyed.unseal(sealed, "task", "p", "A") == body
    # Copied to another task, into another field, into another project:
    for use in (("task", "p", "B"), ("schedule", "p", "A"), ("task", "q", "A")):
        with pytest.raises(SignatureError, match="does not match"):
            keyed.unseal(sealed, *use)
    with pytest.raises(SignatureError, match="does not match"):
        Serializer("k2").unseal(sealed, "task", "p", "A")
    for i in (len(sealed) - 1, 5):  # a byte of the body, a byte of the MAC
        tampered = sealed[:i] + bytes([sealed[i] ^ 1]) + sealed[i + 1 :]
        with pytest.raises(SignatureError, match="does not match"):
            keyed.unseal(tampered, "task", "p", "A")
    with pytest.raises(SignatureError, match="unsigned task payload of 'A'"):
        keyed.unseal(body, "task", "p", "A")
    # Without a key nothing is sealed, and a sealed piece is read as it is.
    plain = Serializer()
    assert plain.seal(body, "task", "p", "A") is body
    assert plain.unseal(sealed, "task", "p", "A") == body


def test_results_are_sealed_for_their_task() -> None:
    keyed = Serializer("k")
    data = keyed.encode_result(TaskResult(task_id="A", status=TaskStatus.SUCCESS, value=1), "p")
    assert keyed.decode_result(data, "p", "A").value == 1
    with pytest.raises(SignatureError, match="task result of 'B'"):
        keyed.decode_result(data, "p", "B")
    unsigned = Serializer().encode_result(TaskResult(task_id="B", status=TaskStatus.SUCCESS), "p")
    with pytest.raises(SignatureError, match="unsigned task result"):
        keyed.decode_result(unsigned, "p", "B")


def test_function_ref_names_the_function_without_importing_it() -> None:
    s = Serializer()
    assert s.function_ref(s.encode_call("no_such_module_xyz:f")) == "no_such_module_xyz:f"
    assert s.function_ref(s.encode_call(lambda: 1)) is None
    with pytest.raises(SerializationError, match="corrupt"):
        s.function_ref(b"\x93\x01\x90\x80")


def test_where_defined_refuses_paths_that_lead_elsewhere() -> None:
    s = Serializer()
    func, _, _ = s.decode_call(s.encode_call("taskfns:add"), where_defined=True)
    assert func is taskfns.add
    assert s.decode_call(s.encode_call("taskfns.add"), where_defined=True)[0] is taskfns.add
    for elsewhere in ("taskfns:os.system", "omniq:current_task"):
        assert callable(s.decode_call(s.encode_call(elsewhere))[0])
        with pytest.raises(SerializationError, match="named where it is defined"):
            s.decode_call(s.encode_call(elsewhere), where_defined=True)


def test_allow_list_patterns_are_validated() -> None:
    from omniq.allowlist import AllowList
    from omniq.errors import ConfigError, FunctionNotAllowedError

    assert AllowList("a:*, b.c.*").patterns == ("a:*", "b.c.*")
    assert AllowList(None).patterns is None
    AllowList(["b.c.*"]).check("b.c:f")
    AllowList(["b.c:*"]).check("b.c.f")  # the dotted form of b.c:f
    with pytest.raises(FunctionNotAllowedError, match=r"'b\.d:f' is not allowed"):
        AllowList(["b.c:*"]).check("b.d:f")
    for bad in (5, [1], {"a": 1}):
        with pytest.raises(ConfigError, match="allowed_functions"):
            AllowList(bad)  # type: ignore[arg-type]
