"""How functions, arguments and results travel through storage.

Values that MessagePack represents exactly (``None``, ``bool``, ``int``, ``float``, ``str``,
``bytes``, and lists / str-keyed dicts of those) are encoded natively by msgspec. Anything else
(tuples, sets, datetimes, dataclasses, closures, ...) is pickled with dill and embedded as a
tagged MessagePack extension, so it decodes to the very same type. With a ``secret_key`` every
pickle is HMAC-SHA256 signed and unsigned or tampered pickles are refused; ``allow_pickle=False``
refuses pickles altogether.

With a ``secret_key``, what a storage holds is also sealed as a whole (:meth:`Serializer.seal`):
a task's call, a schedule's call and a result travel as ``0xc1 0x01 || MAC || body``, where MAC
is HMAC-SHA256 over the binding ``[domain, purpose, project, id]`` then the body. The binding
ties a sealed piece to one use (a task's payload, a schedule's payload, a task's result) of one
task or schedule in one project, so it cannot be replayed elsewhere; :meth:`Serializer.unseal`
checks it before anything is decoded or imported. ``0xc1`` is never used by MessagePack, so a
sealed piece cannot be mistaken for a plain one. Without a key nothing is sealed (and a sealed
piece is read without being checked: a reader without the key cannot check it).

A call is the array ``[function, args, kwargs]``. A workflow step that takes the results of
the tasks it depends on carries a fourth element ``[mode, [task ids]]`` (mode ``one``: one
value, ``list``: a list); the worker replaces it by the value, prepended to ``args``, before the
call runs (:meth:`Serializer.call_inputs`, :meth:`Serializer.with_inputs`).

Functions travel by import path (``"package.module:qualname"``) when that path resolves to the
same object, else by value (lambdas, closures, functions defined in ``__main__`` or a notebook).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib
import io
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dill
import dill._dill
import msgspec

from omniq.errors import SerializationError, SignatureError
from omniq.models import TaskResult

__all__ = ["Serializer", "canonical_path", "func_name", "resolve_import_path"]

_EXT_PICKLE = 1
_EXT_SIGNED_PICKLE = 2
_EXT_FUNC = 3  # a function by value: decoded once per distinct payload, then cached
_EXT_SIGNED_FUNC = 4
_FUNC_CACHE_SIZE = 512
_MAC_SIZE = 32
_SEALED = b"\xc1\x01"  # 0xc1: never used by MessagePack; 0x01: the envelope's version
_SEAL_HEADER = len(_SEALED) + _MAC_SIZE
_SEAL_DOMAIN = "omniq-seal-v1"
#: What each purpose seals, for error messages.
_SEALED_WHAT = {"task": "task payload", "schedule": "schedule payload", "result": "task result"}
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1

_encoder = msgspec.msgpack.Encoder()
_raw_items = msgspec.msgpack.Decoder(list[msgspec.Raw])
_inputs_decoder = msgspec.msgpack.Decoder(tuple[str, list[str]])
INPUT_MODES = ("one", "list")


class _Pickler(dill.Pickler):
    """dill, except that modules other than ``__main__`` travel by name.

    dill pickles modules outside site-packages by value (an editable install, the user's own
    package), which drags their whole state along and fails on objects such as context
    variables. Workers import those modules instead.
    """

    dispatch = dill.Pickler.dispatch.copy()


def _save_module(pickler: Any, module: types.ModuleType) -> None:
    if module.__name__ == "__main__":
        dill._dill.save_module(pickler, module)
    else:
        pickler.save_reduce(importlib.import_module, (module.__name__,), obj=module)


_Pickler.dispatch[types.ModuleType] = _save_module


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=dill.settings["protocol"], recurse=True).dump(value)
    return buffer.getvalue()


def resolve_import_path(path: str) -> Any:
    """The object named by ``"pkg.mod:qualname"`` (or ``"pkg.mod.name"``)."""
    if ":" in path:
        module_name, _, qualname = path.partition(":")
    else:
        module_name, _, qualname = path.rpartition(".")
    if not module_name or not qualname:
        raise SerializationError(
            f"invalid import path {path!r}: expected 'package.module:function'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SerializationError(
            f"cannot import module {module_name!r} for {path!r}: {exc}"
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise SerializationError(
                f"{path!r}: module {module_name!r} has no {qualname!r}"
            ) from exc
    return obj


def canonical_path(path: str) -> str:
    """``"pkg.mod:qualname"`` for either form :func:`resolve_import_path` accepts."""
    if ":" in path:
        return path
    module, _, name = path.rpartition(".")
    return f"{module}:{name}"


def _import_path(func: Callable[..., Any]) -> str | None:
    """The import path that resolves back to ``func``, if there is one."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    path = f"{module}:{qualname}"
    try:
        found = resolve_import_path(path)
    except SerializationError:
        return None
    # A module-level @oq.task wrapper resolves to the wrapper, which calls the function.
    return path if found is func or getattr(found, "__omniq_func__", None) is func else None


def func_name(func: Callable[..., Any] | str) -> str:
    """A readable name for listings."""
    if isinstance(func, str):
        return func
    module = getattr(func, "__module__", None) or "?"
    return f"{module}:{getattr(func, '__qualname__', repr(func))}"


class Serializer:
    """Encodes calls and values; see the module docstring for the format."""

    def __init__(self, secret_key: str | bytes | None = None, allow_pickle: bool = True) -> None:
        if isinstance(secret_key, str):
            secret_key = secret_key.encode()
        self._key = secret_key or None
        self._hmac = hmac.new(self._key, digestmod=hashlib.sha256) if self._key else None
        self.allow_pickle = allow_pickle
        self._decoder = msgspec.msgpack.Decoder(ext_hook=self._ext_hook)
        self._result_decoder = msgspec.msgpack.Decoder(TaskResult, ext_hook=self._ext_hook)
        self._func_refs: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._funcs: dict[Any, Callable[..., Any]] = {}

    @property
    def secret_key(self) -> bytes | None:
        """The key this serializer signs and verifies with (the process pool hands it to its
        children)."""
        return self._key

    # --- sealing -----------------------------------------------------------------------------

    def seal(self, body: bytes, purpose: str, project: str, ident: str) -> bytes:
        """``body`` signed for one use: ``purpose`` (``task``, ``schedule``, ``result``) of the
        task or schedule ``ident`` in ``project``; unchanged without a key."""
        if self._hmac is None:
            return body
        return _SEALED + self._seal_mac(body, purpose, project, ident) + body

    def unseal(self, data: bytes, purpose: str, project: str, ident: str) -> bytes:
        """The body of what :meth:`seal` made for that same use; with a key, a
        :class:`~omniq.errors.SignatureError` if it is unsigned or its signature does not match."""
        sealed = data[: len(_SEALED)] == _SEALED
        if self._hmac is None:
            return data[_SEAL_HEADER:] if sealed else data
        what = _SEALED_WHAT.get(purpose, purpose)
        if not sealed:
            raise SignatureError(
                f"refusing an unsigned {what} of {ident!r}: a secret key is configured, and "
                "whoever wrote it did not have it"
            )
        body = data[_SEAL_HEADER:]
        if not hmac.compare_digest(
            data[len(_SEALED) : _SEAL_HEADER], self._seal_mac(body, purpose, project, ident)
        ):
            raise SignatureError(
                f"refusing a {what} of {ident!r} whose signature does not match: altered, signed "
                "with another key, or copied from another task, schedule or project"
            )
        return body

    def _seal_mac(self, body: bytes, purpose: str, project: str, ident: str) -> bytes:
        assert self._hmac is not None
        mac = self._hmac.copy()  # the key's pads are computed once, in __init__
        mac.update(_encoder.encode((_SEAL_DOMAIN, purpose, project, ident)))
        mac.update(body)
        return mac.digest()

    # --- values ------------------------------------------------------------------------------

    def encode_value(self, value: Any, *, what: str = "value") -> bytes:
        """Encode one value (a task's result, say)."""
        return _encoder.encode(self._wire(value, what))

    def decode_value(self, data: bytes) -> Any:
        return self._decode(data)

    def encode_result(self, result: TaskResult, project: str) -> bytes:
        """Encode a whole :class:`~omniq.models.TaskResult` (its value as :meth:`encode_value`),
        sealed for its task in ``project``."""
        wire = msgspec.structs.replace(result, value=self._wire(result.value, "task result"))
        return self.seal(_encoder.encode(wire), "result", project, result.task_id)

    def decode_result(self, data: bytes, project: str, task_id: str) -> TaskResult:
        """The result of ``task_id`` in ``project`` (its seal checked first, with a key)."""
        body = self.unseal(data, "result", project, task_id)
        try:
            return self._result_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise SerializationError(f"corrupt stored result: {exc}") from exc

    # --- calls -------------------------------------------------------------------------------

    def encode_call(
        self,
        func: Callable[..., Any] | str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        inputs: tuple[str, list[str]] | None = None,
    ) -> bytes:
        """Encode a function reference with its arguments; names the argument that fails.

        ``inputs`` (mode, task ids): the results of those tasks become the first argument."""
        try:
            return self._encode_call(func, args, kwargs, inputs)
        except RecursionError as exc:
            raise SerializationError(
                "arguments are nested too deeply to encode (past the recursion limit)"
            ) from exc

    def _encode_call(
        self,
        func: Callable[..., Any] | str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        inputs: tuple[str, list[str]] | None,
    ) -> bytes:
        ref = self._func_ref(func)
        wire_args = [self._wire(a, f"positional argument {i}") for i, a in enumerate(args)]
        wire_kwargs = {}
        for name, value in (kwargs or {}).items():
            if not isinstance(name, str):
                raise SerializationError(f"keyword argument names must be str, got {name!r}")
            wire_kwargs[name] = self._wire(value, f"argument {name!r}")
        if inputs is not None:
            return _encoder.encode((ref, wire_args, wire_kwargs, inputs))
        return _encoder.encode((ref, wire_args, wire_kwargs))

    def call_inputs(self, payload: bytes) -> tuple[str, list[str]] | None:
        """The (mode, task ids) whose results this call takes first, or None (nothing decoded
        beyond the array's items)."""
        try:
            items = _raw_items.decode(payload)
            return _inputs_decoder.decode(items[3]) if len(items) == 4 else None
        except msgspec.DecodeError as exc:
            raise SerializationError(f"corrupt task payload: {exc}") from exc

    def with_inputs(self, payload: bytes, value: Any) -> bytes:
        """The call with ``value`` prepended to its positional arguments (inputs resolved)."""
        ref, args, kwargs, _ = _raw_items.decode(payload)
        wire = msgspec.Raw(_encoder.encode(self._wire(value, "dependency result")))
        return _encoder.encode((ref, [wire, *_raw_items.decode(args)], kwargs))

    def function_ref(self, payload: bytes) -> str | None:
        """The import path an encoded call names, or None for a function by value (nothing
        decoded beyond the call's first item, nothing imported)."""
        try:
            ref = msgspec.msgpack.decode(_raw_items.decode(payload)[0])
        except (msgspec.DecodeError, IndexError) as exc:
            raise SerializationError(f"corrupt task payload: {exc}") from exc
        if isinstance(ref, str):
            return ref
        if isinstance(ref, msgspec.msgpack.Ext):
            return None
        raise SerializationError(
            "corrupt task payload: its function is neither an import path nor a pickle"
        )

    def decode_call(
        self, payload: bytes, *, where_defined: bool = False
    ) -> tuple[Callable[..., Any], list[Any], dict[str, Any]]:
        """The function, positional and keyword arguments of an encoded call.

        ``where_defined``: an import path must name the function where it is defined (its
        ``__module__`` and ``__qualname__``), so that an allowed module's attributes
        (``"allowed.mod:os.system"``) cannot reach functions elsewhere."""
        decoded = self._decode(payload)
        if isinstance(decoded, list) and len(decoded) == 4:
            raise SerializationError(
                "task payload still waits for its dependencies' results (inputs not resolved)"
            )
        try:
            ref, args, kwargs = decoded
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                "corrupt task payload: expected [function, args, kwargs]"
            ) from exc
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise SerializationError("corrupt task payload: arguments are not a list and a dict")
        if isinstance(ref, str):
            func = self._funcs.get(ref)
            if func is None:
                func = resolve_import_path(ref)
                self._funcs[ref] = func
            if where_defined:
                target = getattr(func, "__omniq_func__", func)
                module = getattr(target, "__module__", "?")
                defined = f"{module}:{getattr(target, '__qualname__', '?')}"
                if defined != canonical_path(ref):
                    raise SerializationError(
                        f"task function {ref!r} is {defined!r}: with an allow-list, a task "
                        "function must be named where it is defined"
                    )
        else:
            func = ref
        if not callable(func):
            raise SerializationError(f"task function {ref!r} is not callable")
        return func, args, kwargs

    # --- internals ---------------------------------------------------------------------------

    def name_of(self, func: Callable[..., Any] | str) -> str:
        """The readable name of a task function (cached per function)."""
        if isinstance(func, str):
            return func
        target = getattr(func, "__omniq_func__", func)
        try:
            return self._names[target]
        except (KeyError, TypeError):
            pass
        name = func_name(target)
        with contextlib.suppress(TypeError):
            self._names[target] = name
        return name

    def _func_ref(self, func: Callable[..., Any] | str) -> Any:
        if isinstance(func, str):
            if ":" not in func and "." not in func:
                raise SerializationError(
                    f"invalid import path {func!r}: expected 'package.module:function'"
                )
            return func
        if not callable(func):
            raise SerializationError(
                f"task function must be callable or an import path, got {func!r}"
            )
        target = getattr(func, "__omniq_func__", func)  # @oq.task wrappers travel as their function
        try:
            return self._func_refs[target]
        except (KeyError, TypeError):
            pass
        ref = _import_path(target) or self._pickle(
            target, f"function {func_name(target)}", func=True
        )
        with contextlib.suppress(TypeError):
            self._func_refs[target] = ref
        return ref

    def _wire(self, value: Any, what: str) -> Any:
        kind = type(value)
        if kind is str or kind is float or kind is bool or value is None or kind is bytes:
            return value
        if kind is int:
            return value if _INT_MIN <= value <= _INT_MAX else self._pickle(value, what)
        if kind is list:
            return [self._wire(v, what) for v in value]
        if kind is dict and all(type(k) is str for k in value):
            return {k: self._wire(v, what) for k, v in value.items()}
        return self._pickle(value, what)

    def _pickle(self, value: Any, what: str, func: bool = False) -> msgspec.msgpack.Ext:
        if not self.allow_pickle:
            raise SerializationError(
                f"{what} of type {type(value).__qualname__} needs pickling, "
                "which is disabled (allow_pickle=False)"
            )
        try:
            data = _dumps(value)
        except Exception as exc:  # dill raises many types for unpicklable objects
            raise SerializationError(
                f"{what} of type {type(value).__qualname__} cannot be serialized: {exc}"
            ) from exc
        if self._key is None:
            return msgspec.msgpack.Ext(_EXT_FUNC if func else _EXT_PICKLE, data)
        mac = hmac.new(self._key, data, hashlib.sha256).digest()
        return msgspec.msgpack.Ext(_EXT_SIGNED_FUNC if func else _EXT_SIGNED_PICKLE, mac + data)

    def _ext_hook(self, code: int, data: memoryview) -> Any:
        if code not in (_EXT_PICKLE, _EXT_SIGNED_PICKLE, _EXT_FUNC, _EXT_SIGNED_FUNC):
            raise SerializationError(f"unknown payload extension {code}")
        if not self.allow_pickle:
            raise SerializationError(
                "payload contains a pickle, which is disabled (allow_pickle=False)"
            )
        raw = bytes(data)
        if code in (_EXT_FUNC, _EXT_SIGNED_FUNC):
            cached = self._funcs.get(raw)
            if cached is None:
                cached = self._unpickle(code == _EXT_SIGNED_FUNC, raw)
                if len(self._funcs) >= _FUNC_CACHE_SIZE:
                    self._funcs.clear()
                self._funcs[raw] = cached
            return cached
        return self._unpickle(code == _EXT_SIGNED_PICKLE, raw)

    def _unpickle(self, signed: bool, raw: bytes) -> Any:
        if self._key is not None:
            if not signed:
                raise SignatureError("refusing an unsigned pickle (a secret key is configured)")
            mac, raw = raw[:_MAC_SIZE], raw[_MAC_SIZE:]
            if not hmac.compare_digest(mac, hmac.new(self._key, raw, hashlib.sha256).digest()):
                raise SignatureError("refusing a pickle whose signature does not match")
        elif signed:
            raw = raw[_MAC_SIZE:]
        try:
            return dill.loads(raw)
        except Exception as exc:
            raise SerializationError(f"cannot unpickle payload: {exc}") from exc

    def _decode(self, data: bytes) -> Any:
        try:
            return self._decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise SerializationError(f"corrupt payload: {exc}") from exc
