"""Write the sync twins of OmniQ's async classes as real classes (``_twins.py`` modules).

Each async class's public members become blocking members of its twin with the same parameters,
annotations, defaults and docstring, copied from the async source; every call goes to the loop
thread through :class:`omniq._sync.SyncTwin`. Hand-written extras (a worker's ``run()``, the
facade's ``task()``) live in a mixin the twin inherits; the mixin's names are not generated.

A contract (``AsyncTaskQueue``, ``AsyncResultStorage``, ``AsyncEventStorage``, ``BaseWorker``,
and the ``Configurable``/``Component`` mixins above them) gets a generic base twin
(``TaskQueueTwin[A]`` ...) holding its members once; each implementation's twin subclasses it
and declares only its constructor and what its async class adds or declares differently
(another signature, docstring or attribute type).

    python scripts/generate_sync_twins.py          # rewrite the generated modules
    python scripts/generate_sync_twins.py --check  # exit 1 when one is stale
"""

from __future__ import annotations

import argparse
import ast
import builtins
import importlib
import importlib.abc
import importlib.util
import inspect
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


@dataclass(frozen=True)
class Twin:
    name: str  # the sync class
    source: str  # "module:AsyncClass"
    extras: str | None = None  # "module:Mixin" with hand-written members
    base: str | None = None  # "Twin" generated before, whose members this one inherits
    contract: bool = False  # a generic base twin of a contract, for the twins of its subclasses


#: The base twin of each contract's twins, by the suffix of their names.
_CONTRACTS = {
    "TaskQueue": "TaskQueueTwin",
    "ResultStorage": "ResultStorageTwin",
    "EventStorage": "EventStorageTwin",
}


def _backend(name: str, *components: tuple[str, str]) -> tuple[str, list[Twin]]:
    return f"omniq/backends/{name}/_twins.py", [
        Twin(
            sync,
            f"omniq.backends.{name}.{module}:Async{sync}",
            base=next(b for suffix, b in _CONTRACTS.items() if sync.endswith(suffix)),
        )
        for sync, module in components
    ]


#: Generated module (under src/) -> the twins it holds.
MODULES: dict[str, list[Twin]] = dict(
    [
        ("omniq/_configurable_twins.py", [
            Twin("ConfigurableTwin", "omniq._configurable:Configurable", contract=True),
            Twin("ComponentTwin", "omniq._configurable:Component", contract=True,
                 base="ConfigurableTwin"),
        ]),
        ("omniq/queue/_twins.py", [
            Twin("TaskQueueTwin", "omniq.queue.base:AsyncTaskQueue", contract=True,
                 base="ComponentTwin"),
        ]),
        ("omniq/storage/_twins.py", [
            Twin("ResultStorageTwin", "omniq.storage.base:AsyncResultStorage", contract=True,
                 base="ComponentTwin"),
            Twin("EventStorageTwin", "omniq.storage.base:AsyncEventStorage", contract=True,
                 base="ComponentTwin"),
        ]),
        _backend("memory", ("MemoryTaskQueue", "queue"), ("MemoryResultStorage", "storage"),
                 ("MemoryEventStorage", "storage")),
        _backend("file", ("FileTaskQueue", "queue"), ("FileResultStorage", "storage"),
                 ("FileEventStorage", "storage")),
        _backend("sqlite", ("SQLiteTaskQueue", "queue"), ("SQLiteResultStorage", "storage"),
                 ("SQLiteEventStorage", "storage")),
        _backend("postgres", ("PostgresTaskQueue", "queue"), ("PostgresResultStorage", "storage"),
                 ("PostgresEventStorage", "storage")),
        _backend("redis", ("RedisTaskQueue", "queue"), ("RedisResultStorage", "storage")),
        _backend("nats", ("NATSTaskQueue", "queue"), ("NATSResultStorage", "storage")),
        ("omniq/workers/_twins.py", [
            Twin("WorkerTwin", "omniq.workers.base:BaseWorker", "omniq.workers.thread_pool:SyncRun",
                 contract=True, base="ConfigurableTwin"),
            Twin("ThreadPoolWorker", "omniq.workers.thread_pool:AsyncThreadPoolWorker",
                 base="WorkerTwin"),
            Twin("ProcessPoolWorker", "omniq.workers.process_pool:AsyncProcessPoolWorker",
                 base="WorkerTwin"),
            Twin("GeventWorker", "omniq.workers.gevent_pool:AsyncGeventWorker",
                 base="WorkerTwin"),
        ]),
        ("omniq/scheduling/_twins.py", [
            Twin("Scheduler", "omniq.scheduling.scheduler:AsyncScheduler"),
        ]),
        ("omniq/_twins.py", [
            Twin("OmniQ", "omniq.facade:AsyncOmniQ", "omniq.facade:SyncTask"),
        ]),
        ("omniq/testing/_twins.py", [
            Twin("TestOmniQ", "omniq.testing.facade:AsyncTestOmniQ",
                 "omniq.testing.facade:SyncTestExtras", base="OmniQ"),
        ]),
    ]
)  # fmt: skip

HEADER = '''"""Sync twins of {names}.

Generated by ``scripts/generate_sync_twins.py`` from the async classes: do not edit; run the script
after changing an async class (a test fails while this file is stale)."""

from __future__ import annotations

from functools import partial
from typing import Any

from omniq._sync import SyncTwin
'''


class _Placeholders(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Stands in for the generated modules while generating: they may be missing or stale, and
    importing ``omniq`` imports them."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        return importlib.util.spec_from_loader(name, self) if name in self.names else None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__getattr__ = lambda attr: type(attr, (), {})  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _twin(name: str) -> Twin:
    return next(t for twins in MODULES.values() for t in twins if t.name == name)


def _module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _load(spec: str) -> Any:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


class Imports:
    """The imports a generated module needs, resolved from the modules the code was copied from."""

    def __init__(self) -> None:
        self.lines: set[str] = set()
        self._scopes: dict[str, dict[str, str]] = {}

    def scope(self, module: str) -> dict[str, str]:
        """Local name -> import line, for every name bound at the top of ``module``."""
        if module not in self._scopes:
            tree = ast.parse(inspect.getsource(importlib.import_module(module)))
            names: dict[str, str] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    for alias in node.names:
                        line = f"from {node.module} import {alias.name}"
                        names[alias.asname or alias.name] = line + (
                            f" as {alias.asname}" if alias.asname else ""
                        )
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        top = alias.asname or alias.name.split(".")[0]
                        names[top] = f"import {alias.name}" + (
                            f" as {alias.asname}" if alias.asname else ""
                        )
            for node in tree.body:
                for name in _bound(node):
                    names.setdefault(name, f"from {module} import {name}")
            self._scopes[module] = names
        return self._scopes[module]

    def need(self, module: str, *nodes: ast.AST | None) -> None:
        """Import every free name used in ``nodes`` (code copied from ``module``)."""
        scope = self.scope(module)
        for node in nodes:
            for name in _names(node):
                if name in scope:
                    self.lines.add(scope[name])
                elif not hasattr(builtins, name):
                    raise SystemExit(f"{module}: cannot resolve {name!r}")


def _bound(node: ast.stmt) -> Iterator[str]:
    if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        yield node.name
    elif isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name):
                yield target.id
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        yield node.target.id


def _names(node: ast.AST | None) -> Iterator[str]:
    """Free names of an annotation, a default value or a parameter list."""
    if node is None:
        return
    if isinstance(node, ast.arguments):
        params = [*node.posonlyargs, *node.args, *node.kwonlyargs, node.vararg, node.kwarg]
        for param in params:
            if param is not None:
                yield from _names(param.annotation)
        for default in [*node.defaults, *node.kw_defaults]:
            if default is not None:
                yield from (n.id for n in ast.walk(default) if isinstance(n, ast.Name))
        return
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield from _names(ast.parse(node.value, mode="eval").body)  # a quoted annotation
    elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "Literal":
        yield "Literal"
    else:
        for child in ast.iter_child_nodes(node):
            yield from _names(child)


def _function_node(func: Any) -> ast.FunctionDef | ast.AsyncFunctionDef:
    node = ast.parse(textwrap.dedent(inspect.getsource(func))).body[0]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    return node


def _call_arguments(args: ast.arguments) -> str:
    """The arguments that pass a function's own parameters on, in the same shape."""
    parts = [a.arg for a in [*args.posonlyargs, *args.args][1:]]
    if args.vararg:
        parts.append(f"*{args.vararg.arg}")
    parts += [f"{a.arg}={a.arg}" for a in args.kwonlyargs]
    if args.kwarg:
        parts.append(f"**{args.kwarg.arg}")
    return ", ".join(parts)


def _docstring(node: ast.AST, indent: str, raw: str | None = None) -> str:
    """The docstring of a copied function; ``raw``: its ``__doc__``, kept to the letter (a
    member declared at the same depth), so that a twin's inherited member has the same one."""
    doc = ast.get_docstring(node)  # type: ignore[arg-type]
    if not doc:
        return ""
    if raw is not None:
        raw = raw.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        if raw.endswith('"'):
            raw = raw[:-1] + '\\"'
        return f'{indent}"""{raw}"""\n'
    doc = doc.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = doc.splitlines()
    body = "\n".join((indent + line) if line else "" for line in lines[1:])
    closing = f"\n{body}\n{indent}" if len(lines) > 1 else ""
    return f'{indent}"""{lines[0]}{closing}"""\n'


@dataclass
class ClassWriter:
    twin: Twin
    imports: Imports
    renames: dict[str, str]  # async class name -> its twin's name, in returned types
    module: str = ""  # the generated module it goes in, under src/
    out: list[str] = field(default_factory=list)

    def write(self) -> str:
        source = _load(self.twin.source)
        owner = source.__name__
        self.imports.lines.add(f"from {source.__module__} import {owner}")
        target = owner  # the async class its _target() returns: a type variable in a contract's
        bases = [f"SyncTwin[{target}]"]
        registers = f", twin={owner}"
        skip: set[str] = set()
        inherited: dict[str, list[str]] = {}  # the base twin's members, as it declares them
        inherited_attributes: dict[str, str] = {}
        if self.twin.contract:
            # Generic in the async class, so a backend's twin targets its own async class.
            target = f"_{owner}T"
            self.imports.lines.add("from typing import TypeVar")
            self.out += [f'{target} = TypeVar("{target}", bound={owner})', "", ""]
            bases, registers = [f"SyncTwin[{target}]"], ""
        base = _twin(self.twin.base) if self.twin.base else None
        hand_written = _load(self.twin.extras) if self.twin.extras else None
        if hand_written is not None:
            self.imports.lines.add(f"from {hand_written.__module__} import {hand_written.__name__}")
            bases.insert(0, hand_written.__name__)
            skip = {n for klass in hand_written.__mro__[:-1] for n in vars(klass)}
        if base is not None:
            base_source = _load(base.source)
            module = next(m for m, ts in MODULES.items() if base in ts)
            if module != self.module:
                self.imports.lines.add(f"from {_module_name(module)} import {base.name}")
            base_skip: set[str] = set()
            if base.extras:
                base_mixin = _load(base.extras)
                base_skip = {n for k in base_mixin.__mro__[:-1] for n in vars(k)}
            if base.contract:
                # A member whose declaration in the contract's twin would read the same (its
                # body forwards by name, so it reaches this async class's override) is inherited.
                bases[-1] = f"{base.name}[{target}]"
                writer = ClassWriter(base, Imports(), self.renames, module=module)
                inherited = {
                    n: writer._member(base_source, n, inspect.getattr_static(base_source, n))
                    for n in dir(base_source)
                    if not n.startswith("_") and n not in base_skip
                }
                inherited_attributes = {
                    n: t for n, (t, _, _) in writer._attributes(base_source, base_skip).items()
                }
                if base.extras:  # named in each twin too, as its own members
                    hand_written = base_mixin
                    self.imports.lines.add(
                        f"from {base_mixin.__module__} import {base_mixin.__name__}"
                    )
            else:
                # A subclass of another twin: its members forward by name, so they reach this
                # async class's overrides; only what the base lacks is generated here.
                bases[-1] = base.name
                skip |= {n for n in dir(base_source) if not n.startswith("_")}
            skip |= base_skip
        head = f"class {self.twin.name}({', '.join(bases)}{registers}):"
        if self.twin.contract:
            doc = f"Sync twin of the :class:`{owner}` contract, the base of its subclasses' twins."
        else:
            doc = f"Sync twin of :class:`{owner}`: the same members, blocking."
        self.out += [head, f'    """{doc}"""', ""]
        attributes = self._attributes(source, skip)
        for name in sorted(attributes):
            type_text, module_name, annotation = attributes[name]
            if inherited_attributes.get(name) == type_text:
                continue
            if annotation is not None:
                self.imports.need(module_name, annotation)
            self.out.append(f"    {name}: {type_text}")
        if self.out[-1] != "":
            self.out.append("")
        if base is not None and not base.contract:
            self.imports.lines.add("from typing import cast")
            self.out += [
                f"    def _target(self) -> {owner}:",
                f"        return cast({owner}, super()._target())",
                "",
            ]
        if hand_written is not None:
            own = sorted(n for n in vars(hand_written) if not n.startswith("_"))
            name = hand_written.__name__
            self.out += [f"    {n} = {name}.{n}  # hand-written" for n in own] + [""]
        if not self.twin.contract:
            self._init(source)
        for name in sorted(dir(source)):
            if name.startswith("_") or name in skip:
                continue
            raw = inspect.getattr_static(source, name)
            if name in inherited:
                as_base = self._member(source, name, raw, generic=True, imports=Imports())
                if as_base and as_base == inherited[name]:
                    continue
            self.out += self._member(source, name, raw)
        return "\n".join(self.out)

    def _attributes(
        self, source: type, skip: set[str]
    ) -> dict[str, tuple[str, str, ast.expr | None]]:
        """The async object's public instance attributes (read through ``__getattr__``): name ->
        (declared type, module of its annotation, annotation)."""
        found: dict[str, tuple[str, str, ast.expr | None]] = {}
        for klass in reversed(source.__mro__[:-1]):
            if klass.__module__.split(".")[0] != "omniq":
                continue
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
            for name, annotation in _assigned_attributes(tree):
                if name.startswith("_") or name in skip or callable(getattr(klass, name, None)):
                    continue
                if isinstance(inspect.getattr_static(source, name, None), property):
                    continue
                if annotation is not None and not _holds_component(annotation):
                    text = self._rename(ast.unparse(annotation))
                    found[name] = (text, klass.__module__, annotation)
                else:
                    found.setdefault(name, ("Any", klass.__module__, None))
        return found

    def _init(self, source: type) -> None:
        init = next(k.__dict__["__init__"] for k in source.__mro__ if "__init__" in k.__dict__)
        node = _function_node(init)
        self.imports.need(init.__module__, node.args)
        self.out.append(f"    def __init__({ast.unparse(node.args)}) -> None:")
        doc = _docstring(node, "        ")
        if doc:
            self.out.append(doc.rstrip("\n"))
        call = _call_arguments(node.args)
        self.out += [f"        self._construct(partial({source.__name__}, {call}))", ""]

    def _member(
        self,
        source: type,
        name: str,
        raw: Any,
        *,
        generic: bool | None = None,
        imports: Imports | None = None,
    ) -> list[str]:
        """The declaration of one member; ``generic``: as a contract's twin declares it (a
        classmethod calls the twin's async class; no static methods or class attributes)."""
        generic = self.twin.contract if generic is None else generic
        imports = imports or self.imports
        if isinstance(raw, property):
            node = _function_node(raw.fget)
            imports.need(raw.fget.__module__, node.returns)
            returns = ast.unparse(node.returns) if node.returns else "Any"
            body = f"self._target().{name}"
            return self._def(["@property"], name, "self", returns, node, body, raw.fget.__doc__)
        kind = "static" if isinstance(raw, staticmethod) else None
        if isinstance(raw, classmethod | staticmethod):
            kind = kind or "class"
            raw = raw.__func__
        if not callable(raw):
            return []
        if isinstance(raw, type):  # a class attribute holding a class (``config_class``)
            return [] if generic else [f"    {name} = {source.__name__}.{name}", ""]
        if kind == "static" and generic:
            return []
        node = _function_node(raw)
        imports.need(raw.__module__, node.args, node.returns)
        params, call = ast.unparse(node.args), _call_arguments(node.args)
        returns = ast.unparse(node.returns) if node.returns else "Any"
        owner = "cls._async_class" if generic else source.__name__
        if kind == "class":
            own = {"Any", "Self", *(k.__name__ for k in source.__mro__)}
            returns = "Self" if returns in own else self._rename(returns)
            imports.lines.add("from typing import Self")
            body = f"cls._build(partial({', '.join(filter(None, [f'{owner}.{name}', call]))}))"
            return self._def(["@classmethod"], name, params, returns, node, body, raw.__doc__)
        if kind == "static":
            body = f"{owner}.{name}({call})"
            return self._def(["@staticmethod"], name, params, returns, node, body, raw.__doc__)
        if inspect.iscoroutinefunction(raw):
            body = f"self._run(self._target().{name}({call}))"
        else:
            body = f"self._target().{name}({call})"
        return self._def([], name, params, returns, node, body, raw.__doc__)

    def _def(
        self,
        decorators: list[str],
        name: str,
        params: str,
        returns: str,
        node: ast.AST,
        body: str,
        raw_doc: str | None,
    ) -> list[str]:
        out = [f"    {d}" for d in decorators]
        out.append(f"    def {name}({params}) -> {returns}:")
        doc = _docstring(node, "        ", raw_doc)
        if doc:
            out.append(doc.rstrip("\n"))
        return [*out, f"        return {body}", ""]

    def _rename(self, annotation: str) -> str:
        tree = ast.parse(annotation, mode="eval")
        for sub in ast.walk(tree):
            if isinstance(sub, ast.Name) and sub.id in self.renames:
                sub.id = self.renames[sub.id]
        return ast.unparse(tree)


def _assigned_attributes(cls: ast.ClassDef) -> Iterator[tuple[str, ast.expr | None]]:
    """Class-level annotated names and ``self.x`` assignments in the class's methods."""
    for node in cls.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and "ClassVar" not in ast.unparse(node.annotation)
        ):
            yield node.target.id, node.annotation
    for func in cls.body:
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        rebound = {
            t.id for n in ast.walk(func) if isinstance(n, ast.Assign)
            for t in n.targets if isinstance(t, ast.Name)
        }  # fmt: skip
        params = {
            a.arg: a.annotation
            for a in [*func.args.args, *func.args.kwonlyargs]
            if a.arg not in rebound
        }
        for node in ast.walk(func):
            if isinstance(node, ast.AnnAssign) and _is_self_attr(node.target):
                yield node.target.attr, node.annotation  # type: ignore[attr-defined]
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    for elt in target.elts if isinstance(target, ast.Tuple) else [target]:
                        if _is_self_attr(elt):
                            value = node.value if not isinstance(target, ast.Tuple) else None
                            yield elt.attr, _param_type(value, params)  # type: ignore[attr-defined]


def _param_type(value: ast.expr | None, params: dict[str, ast.expr | None]) -> ast.expr | None:
    """The type of ``self.x = x`` (the parameter's), ``self.x = x or default`` (without None),
    ``self.x = float(...)`` or ``Class(...)`` and ``self.x = 0``; None when not that simple."""
    if isinstance(value, ast.Name):
        return params.get(value.id)
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        name = value.func.id
        return value.func if name in ("bool", "int", "float", "str") or name[0].isupper() else None
    if isinstance(value, ast.Constant) and type(value.value) in (bool, int, float, str):
        return ast.Name(type(value.value).__name__)
    if isinstance(value, ast.BoolOp) and isinstance(value.op, ast.Or):
        first = _param_type(value.values[0], params)
        if isinstance(first, ast.BinOp) and ast.unparse(first.right) == "None":
            return first.left
    return None


def _holds_component(annotation: ast.expr) -> bool:
    """Whether an attribute holds an async component, which a twin hands out as its sync twin
    when it has one (so its declared type would be wrong): declared ``Any`` instead."""
    return any(name.startswith("Async") or name == "BaseWorker" for name in _names(annotation))


def _is_self_attr(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def render(path: str, twins: list[Twin], renames: dict[str, str]) -> str:
    imports = Imports()
    classes = [ClassWriter(twin, imports, renames, path).write() for twin in twins]
    text = HEADER.format(names=", ".join(_load(t.source).__name__ for t in twins))
    text += "\n".join(sorted(imports.lines)) + "\n\n"
    text += f"__all__ = {[t.name for t in twins]!r}\n\n\n".replace("'", '"')
    text += "\n\n".join(c.rstrip() + "\n" for c in classes)
    return _ruff(text, SRC / path)


def _ruff(text: str, path: Path) -> str:
    ruff = [sys.executable, "-m", "ruff"]
    for args in (
        ["check", "--fix-only", "--exit-zero"],
        ["format"],
    ):
        done = subprocess.run(
            [*ruff, *args, "--stdin-filename", str(path), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        text = done.stdout
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    check = parser.parse_args(argv).check
    sys.path.insert(0, str(SRC))
    generated = {_module_name(path) for path in MODULES}
    sys.meta_path.insert(0, _Placeholders(generated))
    renames = {t.source.split(":")[1]: t.name for twins in MODULES.values() for t in twins}
    stale = []
    for path, twins in MODULES.items():
        text = render(path, twins, renames)
        target = SRC / path
        if target.exists() and target.read_text() == text:
            continue
        stale.append(path)
        if not check:
            target.write_text(text)
    for path in stale:
        print(f"{'stale' if check else 'wrote'}: src/{path}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
