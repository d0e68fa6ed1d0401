"""The half of pinning that runs inside the Jupyter kernel, next to the live objects.

The host sends one line that imports this module and calls :func:`capture` with the path of a
request file; the answer comes back as ``result.json`` (and ``state.dill``) in the same folder,
so nothing large travels over the kernel's messaging channel. Nothing here binds a global name
in the kernel.
"""

from __future__ import annotations

import io
import json
import re
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dill

from checkpoint2svc.checkpoint.manifest import STATE_NAME
from checkpoint2svc.checkpoint.requirements import modules_in_pickle, resolve_distributions
from checkpoint2svc.errors import (
    CellExecutionError,
    Checkpoint2SvcError,
    ExecutionError,
    SignatureError,
    TypeInferenceError,
    UnserializableStateError,
)
from checkpoint2svc.runtime.executor import CellExecutor, code_global_names
from checkpoint2svc.runtime.json_values import encode_json
from checkpoint2svc.signature.cell_analysis import analyze_cell, annotations_of
from checkpoint2svc.signature.infer import infer_type, type_from_annotation
from checkpoint2svc.signature.types import TypeIR

RESULT_NAME = "result.json"
_IPYTHON_HISTORY = re.compile(r"^_(i{1,3}|i?\d+|_{0,2})$")

_FILE_FIX = (
    "open the file inside the cell that uses it, or read its content into a variable in an "
    "earlier cell"
)
_FIXES = {
    "lock": "create the lock inside the target cell, or drop it",
    "socket": "open the connection inside the target cell",
    "generator": "turn it into a list in an earlier cell (`{name} = list({name})`)",
}
NO_INPUTS = (
    "no inputs given and no cell is tagged `parameters`; tag the cell that defines the inputs "
    "`parameters` (the papermill convention) or pass --inputs a,b"
)
_STANDARD_STREAMS = ("stdin", "stdout", "stderr", "__stdin__", "__stdout__", "__stderr__")


def _is_file_handle(value: Any) -> bool:
    """An open (or closed) file other than the standard streams; in-memory buffers are not."""
    return (
        isinstance(value, io.IOBase)
        and not isinstance(value, io.StringIO | io.BytesIO)
        and not any(value is getattr(sys, name, None) for name in _STANDARD_STREAMS)
    )


class _PortablePickler(dill.Pickler):  # type: ignore[misc]
    """dill, refusing file handles at any depth.

    dill pickles a file handle as its path and mode and reopens it wherever the state is loaded:
    on another machine that fails or silently yields an empty file, and a handle opened for
    writing truncates the file there. A checkpoint must not do either.
    """

    def reducer_override(self, obj: Any) -> Any:
        if _is_file_handle(obj):
            raise TypeError(
                f"a file handle ({getattr(obj, 'name', '?')!r}) would be reopened by path "
                "wherever the checkpoint is loaded"
            )
        return NotImplemented


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _PortablePickler(buffer, dill.settings["protocol"]).dump(value)
    return buffer.getvalue()


def _changed(value: Any, pickled: bytes) -> bool:
    """Whether ``value`` no longer pickles to ``pickled`` (or no longer pickles at all)."""
    try:
        return _dumps(value) != pickled
    except Exception:
        return True


def _main_namespace() -> tuple[types.ModuleType, dict[str, Any], set[str]]:
    """The kernel's user module, its globals, and the names IPython put there itself."""
    main = sys.modules["__main__"]
    namespace = main.__dict__
    hidden: set[str] = set()
    shell = namespace.get("get_ipython")
    if callable(shell):
        ip = shell()
        if ip is not None:
            namespace = ip.user_ns
            hidden = {k for k, v in ip.user_ns_hidden.items() if namespace.get(k) is v}
    return main, namespace, hidden


def kernel_namespace() -> dict[str, Any]:
    """The globals of the notebook's user code (IPython's ``user_ns``)."""
    return _main_namespace()[1]


def _is_internal(name: str, hidden: set[str]) -> bool:
    return (
        name in hidden
        or (name.startswith("__") and name.endswith("__"))
        or bool(_IPYTHON_HISTORY.match(name))
        or name in ("In", "Out", "get_ipython", "exit", "quit")
    )


def _code_names(value: Any) -> set[str]:
    """Globals a notebook function, or the methods of a notebook class, look up."""
    if isinstance(value, types.FunctionType):
        return code_global_names(value.__code__)
    names: set[str] = set()
    for member in vars(value).values():
        fn = getattr(member, "__func__", member)
        if isinstance(fn, types.FunctionType):
            names |= code_global_names(fn.__code__)
    return names


def needed_names(reads: tuple[str, ...], namespace: dict[str, Any]) -> list[str]:
    """Globals the cell reads, directly or through the notebook's functions and classes."""
    needed: dict[str, None] = {}
    queue = [name for name in reads if name in namespace]
    while queue:
        name = queue.pop(0)
        if name in needed:
            continue
        needed[name] = None
        value = namespace[name]
        is_local = getattr(value, "__module__", None) == "__main__"
        if is_local and isinstance(value, types.FunctionType | type):
            queue.extend(n for n in sorted(_code_names(value)) if n in namespace)
    return list(needed)


def _qualified_type(value: Any) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _fix_for(name: str, value: Any) -> str:
    if _is_file_handle(value):
        return _FILE_FIX
    type_name = type(value).__name__
    for key, fix in _FIXES.items():
        if key.lower() in type_name.lower():
            return fix.format(name=name)
    return "recreate it inside the target cell, or leave it out of what the cell reads"


def _select_inputs(
    explicit: list[str] | None,
    parameters_source: str | None,
    reads: list[str],
    namespace: dict[str, Any],
) -> list[str]:
    if explicit is not None:
        for name in explicit:
            if name not in reads:
                raise SignatureError(
                    f"--inputs names {name!r}, which the target cell never reads "
                    f"(it reads: {', '.join(reads) or 'nothing'}); fix the flag"
                )
        chosen = explicit
    elif parameters_source is not None:
        params = analyze_cell(parameters_source, "the parameters cell").binds
        chosen = [name for name in params if name in reads]
        if not chosen:
            raise SignatureError(
                "the target cell reads none of the variables of the cell tagged `parameters` "
                f"({', '.join(params) or 'it defines none'}); read them in the target cell or "
                "pass --inputs"
            )
    else:
        raise SignatureError(NO_INPUTS)
    for name in chosen:
        if name not in namespace:
            raise SignatureError(
                f"input {name!r} has no value before the target cell; define an example value "
                "in an earlier cell (the parameters cell) so its type can be recorded"
            )
    return chosen


def _select_outputs(
    explicit: list[str] | None, assigns: tuple[str, ...], binds: tuple[str, ...]
) -> list[str]:
    if explicit is not None:
        for name in explicit:
            if name not in binds:
                raise SignatureError(
                    f"--outputs names {name!r}, which the target cell never assigns "
                    f"(it assigns: {', '.join(assigns) or 'nothing'}); fix the flag"
                )
        return explicit
    chosen = [name for name in assigns if not name.startswith("_")]
    if not chosen:
        raise SignatureError(
            "the target cell assigns no variable, so it has no outputs; assign the result to a "
            "variable (e.g. `result = ...`) or pass --outputs"
        )
    return chosen


def _serialize_each(
    namespace: dict[str, Any], names: list[str], needed: set[str]
) -> tuple[dict[str, bytes], list[dict[str, Any]], list[dict[str, str]]]:
    """Pickle every variable on its own: sizes, and which ones cannot be serialized."""
    pickled: dict[str, bytes] = {}
    state: list[dict[str, Any]] = []
    excluded: list[dict[str, str]] = []
    for name in names:
        value = namespace[name]
        try:
            data = _dumps(value)
        except Exception as exc:
            if name in needed:
                raise UnserializableStateError(
                    f"variable {name!r} ({_qualified_type(value)}) is needed by the target cell "
                    f"but cannot be serialized ({type(exc).__name__}: {exc}); "
                    f"{_fix_for(name, value)}"
                ) from None
            excluded.append({"name": name, "type": _qualified_type(value), "reason": str(exc)})
            continue
        pickled[name] = data
        state.append({"name": name, "type": _qualified_type(value), "size": len(data)})
    return pickled, state, excluded


def _dump_state(
    main: types.ModuleType, namespace: dict[str, Any], drop: list[str], path: Path
) -> None:
    """Write the module's globals minus ``drop``; the kernel's namespace is restored after."""
    removed = {name: namespace.pop(name) for name in drop if name in namespace}
    try:
        with _stable_cell_file_names(namespace):
            dill.dump_module(str(path), module=main)
    finally:
        namespace.update(removed)


# ipykernel compiles each cell as /tmp/ipykernel_<pid>/<hash of the source>.py
_CELL_FILE = re.compile(r".*[/\\]ipykernel_\d+[/\\](\d+)\.py$")


def _stable_code(code: types.CodeType) -> types.CodeType:
    """``code`` with the kernel's pid taken out of its file name, nested code objects too."""
    match = _CELL_FILE.match(code.co_filename)
    consts = tuple(_stable_code(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    if match is None and consts == code.co_consts:
        return code
    filename = f"<notebook cell {match.group(1)}>" if match else code.co_filename
    return code.replace(co_filename=filename, co_consts=consts)


def _notebook_functions(value: Any) -> Iterator[types.FunctionType]:
    if isinstance(value, types.FunctionType) and value.__module__ == "__main__":
        yield value
    elif isinstance(value, type) and value.__module__ == "__main__":
        for member in vars(value).values():
            member = getattr(member, "__func__", member)  # staticmethod, classmethod
            for function in (member, getattr(member, "fget", None), getattr(member, "fset", None)):
                if isinstance(function, types.FunctionType):
                    yield function


@contextmanager
def _stable_cell_file_names(namespace: dict[str, Any]) -> Iterator[None]:
    """Pin the same state to the same bytes: the file names of functions and methods defined in
    the notebook carry the kernel's pid, which would change the state's sha256 (and its image
    layer) on every pin. The live objects get their code back afterwards."""
    swapped: list[tuple[types.FunctionType, types.CodeType]] = []
    try:
        for value in list(namespace.values()):
            for function in _notebook_functions(value):
                stable = _stable_code(function.__code__)
                if stable is not function.__code__:
                    swapped.append((function, function.__code__))
                    function.__code__ = stable
        yield
    finally:
        for function, code in swapped:
            function.__code__ = code


def _type_of(
    name: str, value: Any, annotation: Any, warnings: list[str], strict: bool, fix: str
) -> TypeIR:
    def warn(message: str) -> None:
        if strict:
            raise TypeInferenceError(f"{message}, which --strict forbids; {fix}, or drop --strict")
        warnings.append(message)

    if annotation is not None:
        typed = type_from_annotation(annotation, value, name, warn)
        if typed is not None:
            return typed
        warnings.append(f"{name}: its annotation is not a type checkpoint2svc knows; "
                        "the type is inferred from its value")  # fmt: skip
    return infer_type(value, name, warn)


def capture_into(request: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Capture the state into ``out_dir``, run the cell once on the live namespace, and return
    the signature, examples and requirements (raises :class:`Checkpoint2SvcError`)."""
    main, namespace, hidden = _main_namespace()
    source: str = request["python_source"]
    if "get_ipython()" in source:
        raise SignatureError(
            "the target cell uses IPython syntax (%magic or !command), which a service cannot "
            "run; move it to an earlier cell"
        )
    cell = analyze_cell(source, "the target cell")
    reads = needed_names(cell.reads, namespace)
    inputs = _select_inputs(request["inputs"], request["parameters_source"], reads, namespace)
    outputs = _select_outputs(request["outputs"], cell.assigns, cell.binds)

    candidates = [n for n in list(namespace) if not _is_internal(n, hidden)]
    needed = set(reads)
    pickled, state, excluded = _serialize_each(namespace, candidates, needed)
    drop = [n for n in namespace if _is_internal(n, hidden) and not n.startswith("__")]
    drop += [e["name"] for e in excluded]
    _dump_state(main, namespace, drop, out_dir / STATE_NAME)

    warnings: list[str] = []
    if excluded:
        warnings.append(
            "The following variables cannot be serialized and are left out (the target cell "
            "does not need them): " + ", ".join(f"{e['name']} ({e['type']})" for e in excluded)
        )
    annotations = annotations_of(request["parameters_source"] or "")
    input_values = {name: namespace[name] for name in inputs}
    input_vars = []
    for name in inputs:
        fix = f"annotate {name!r} in the parameters cell (`{name}: Any` accepts any JSON value)"
        type_ = _type_of(
            name, input_values[name], annotations.get(name), warnings, request["strict"], fix
        )
        example = encode_json(input_values[name], type_, name, tensors="b64")
        input_vars.append({"name": name, "type": type_.to_dict(), "example": example})

    watched = {
        name: namespace[name]
        for name in reads
        if name not in inputs and name in pickled
        and not isinstance(namespace[name], types.ModuleType | types.FunctionType | type)
    }  # fmt: skip
    runner = CellExecutor(namespace, source, inputs, outputs, mode="shared")
    try:
        output_values = runner.run(input_values)
    except ExecutionError as exc:
        raise CellExecutionError(
            f"{request.get('label', 'the target cell')} raised {exc.error_name} on the example "
            f"inputs: {exc.error_message}",
            "\n".join(exc.traceback),
        ) from None
    copy_per_call = [name for name, value in watched.items() if _changed(value, pickled[name])]

    output_vars = []
    for name in outputs:
        fix = f"make the cell give {name!r} a value of one precise type, or omit it from --outputs"
        type_ = _type_of(name, output_values[name], None, warnings, request["strict"], fix)
        example = encode_json(output_values[name], type_, name, tensors="b64")
        output_vars.append({"name": name, "type": type_.to_dict(), "example": example})

    packages = modules_in_pickle(out_dir / STATE_NAME) | set(cell.imports)
    packages |= {
        type(v).__module__.split(".")[0] for v in [*input_values.values(), *output_values.values()]
    }
    return {
        "inputs": input_vars,
        "outputs": output_vars,
        "state": state,
        "excluded": excluded,
        "copy_per_call": copy_per_call,
        "requirements": [d.to_dict() for d in resolve_distributions(packages)],
        "python_version": ".".join(str(p) for p in sys.version_info[:3]),
        "warnings": warnings,
    }


def capture(request_path: str) -> None:
    """Capture the state and signature the request asks for; always answer in ``result.json``."""
    request_file = Path(request_path)
    out_dir = request_file.parent
    request = json.loads(request_file.read_text(encoding="utf-8"))
    try:
        result: dict[str, Any] = {"ok": capture_into(request, out_dir)}
    except Checkpoint2SvcError as exc:
        result = {
            "error": {
                "class": type(exc).__name__,
                "message": str(exc),
                "traceback": getattr(exc, "traceback", ""),
            }
        }
    (out_dir / RESULT_NAME).write_text(json.dumps(result), encoding="utf-8")
