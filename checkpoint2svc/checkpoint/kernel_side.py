"""The half of pinning that runs inside the Jupyter kernel, next to the live objects.

The host sends one line that imports this module and calls :func:`capture` with the path of a
request file (a :class:`PinRequest`); the answer comes back as ``result.json`` (a
:class:`PinResult`, or an error) and ``state.dill`` in the same folder, so nothing large travels
over the kernel's messaging channel. Nothing here binds a global name in the kernel.

This module gathers what only the kernel can see (the values, their types, the example runs);
which variables become inputs and outputs is decided by :mod:`checkpoint2svc.signature.selection`.
"""

from __future__ import annotations

import copy
import io
import re
import sys
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dill

from checkpoint2svc.checkpoint.manifest import STATE_NAME, StateVariable, Variable
from checkpoint2svc.checkpoint.pin_protocol import (
    ExcludedVariable,
    PinRequest,
    PinResult,
    write_result,
)
from checkpoint2svc.checkpoint.requirements import modules_in_pickle, resolve_distributions
from checkpoint2svc.errors import (
    CellExecutionError,
    Checkpoint2SvcError,
    ExecutionError,
    SignatureError,
    TypeInferenceError,
    UnserializableStateError,
    ValueConversionError,
)
from checkpoint2svc.execution.differences import output_differences
from checkpoint2svc.execution.executor import CellExecutor
from checkpoint2svc.execution.isolation import code_global_names, describe_shared
from checkpoint2svc.execution.random_state import RandomState
from checkpoint2svc.signature.cell_analysis import analyze_cell, annotations_of
from checkpoint2svc.signature.infer import infer_type, type_from_annotation
from checkpoint2svc.signature.selection import (
    OutputCandidate,
    example_size_warning,
    is_simple_value,
    select_inputs,
    select_outputs,
    served_outputs,
)
from checkpoint2svc.wire.json_values import encode_json
from checkpoint2svc.wire.limits import DEFAULT_MAX_MESSAGE_BYTES
from checkpoint2svc.wire.type_ir import TypeIR

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


def _serialize_each(
    namespace: dict[str, Any], names: list[str], needed: set[str]
) -> tuple[list[StateVariable], list[ExcludedVariable]]:
    """Pickle every variable on its own: sizes, and which ones cannot be serialized."""
    state: list[StateVariable] = []
    excluded: list[ExcludedVariable] = []
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
            excluded.append(ExcludedVariable(name, _qualified_type(value), str(exc)))
            continue
        state.append(StateVariable(name, _qualified_type(value), len(data)))
    return state, excluded


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


@dataclass(frozen=True)
class _Output:
    """An output as the example run gave it: its type and JSON example, or, when it has no
    wire type, neither."""

    name: str
    type: TypeIR | None
    example: Any
    python_type: str

    def candidate(self) -> OutputCandidate:
        return OutputCandidate(self.name, "" if self.type is not None else self.python_type)

    def variable(self) -> Variable:
        assert self.type is not None, f"{self.name} has no wire type, it is not served"
        return Variable(self.name, self.type, self.example)


def _output_of(name: str, value: Any, warnings: list[str], strict: bool) -> _Output:
    """The output's type and example, or none (the json fallback's warnings are kept only for
    an output that is served)."""
    heard: list[str] = []
    type_ = _type_of(name, value, None, heard, False, "")
    try:
        example = encode_json(value, type_, name, tensors="b64")
    except ValueConversionError:  # left out, --strict or not
        return _Output(name, None, None, _qualified_type(value))
    if strict and heard:
        fix = f"make the cell give {name!r} a value of one precise type, or omit it from --outputs"
        _type_of(name, value, None, [], True, fix)  # raises, naming the fallback
    warnings.extend(heard)
    return _Output(name, type_, example, _qualified_type(value))


def _size_check(what: str, examples: dict[str, Any], warnings: list[str], strict: bool) -> None:
    warning = example_size_warning(what, examples, DEFAULT_MAX_MESSAGE_BYTES, strict)
    if warning is not None:
        warnings.append(warning)


def capture_into(request: PinRequest, out_dir: Path, keep_outputs: bool = False) -> PinResult:
    """Capture the state into ``out_dir``, run the cell twice on the example inputs (from the
    pinned state each time), and return the signature, examples and requirements (raises
    :class:`Checkpoint2SvcError`). ``keep_outputs`` leaves the first run's outputs bound in the
    kernel, as running the cell would (``%%deploy``)."""
    main, namespace, hidden = _main_namespace()
    source = request.python_source
    if "get_ipython()" in source:
        raise SignatureError(
            "the target cell uses IPython syntax (%magic or !command), which a service cannot "
            "run; move it to an earlier cell"
        )
    random_state = RandomState.capture()  # where the notebook's generators are, before anything
    cell = analyze_cell(source, "the target cell")
    reads = needed_names(cell.reads, namespace)
    parameters = (
        analyze_cell(request.parameters_source, "the parameters cell").binds
        if request.parameters_source is not None
        else None
    )
    simple = [n for n in cell.reads if n in namespace and is_simple_value(namespace[n])]
    choice = select_inputs(request.inputs, parameters, reads, namespace, simple)
    inputs = list(choice.names)
    outputs = list(select_outputs(request.outputs, cell.assigns, cell.binds))

    candidates = [n for n in list(namespace) if not _is_internal(n, hidden)]
    needed = set(reads)
    state, excluded = _serialize_each(namespace, candidates, needed)
    drop = [n for n in namespace if _is_internal(n, hidden) and not n.startswith("__")]
    drop += [e.name for e in excluded]
    _dump_state(main, namespace, drop, out_dir / STATE_NAME)
    random_state.write(out_dir)

    warnings: list[str] = []
    if excluded:
        warnings.append(
            "The following variables cannot be serialized and are left out (the target cell "
            "does not need them): " + ", ".join(f"{e.name} ({e.type})" for e in excluded)
        )
    annotations = annotations_of(request.parameters_source or "")
    input_values = {name: namespace[name] for name in inputs}
    input_vars: list[Variable] = []
    for name in inputs:
        fix = f"annotate {name!r} in the parameters cell (`{name}: Any` accepts any JSON value)"
        type_ = _type_of(
            name, input_values[name], annotations.get(name), warnings, request.strict, fix
        )
        try:
            example = encode_json(input_values[name], type_, name, tensors="b64")
        except ValueConversionError as exc:
            raise SignatureError(
                f"input {name!r} ({_qualified_type(input_values[name])}) has no wire type "
                f"({exc.reason}), so no caller could send it; leave it out of --inputs (it then "
                "comes from the pinned state), or give it a plain value in the parameters cell"
            ) from None
        input_vars.append(Variable(name, type_, example))
    _size_check("input", {v.name: v.example for v in input_vars}, warnings, request.strict)

    internal = {n for n in namespace if _is_internal(n, hidden)}  # IPython's, not the state's
    runner = CellExecutor(namespace, source, inputs, outputs, "isolated", random_state, internal)
    assert runner.pinned is not None
    if runner.pinned.plan.shared and request.mode == "isolated":
        warnings.append(describe_shared(runner.pinned.plan.shared))
    output_values = _run_example(runner, input_values, request.label)
    found = [_output_of(n, output_values[n], warnings, request.strict) for n in outputs]
    served = served_outputs([o.candidate() for o in found], request.outputs is not None)
    if served.warning:
        warnings.append(served.warning)
    by_name = {o.name: o for o in found}
    output_vars = [by_name[name].variable() for name in served.names]
    _size_check("output", {v.name: v.example for v in output_vars}, warnings, request.strict)
    deterministic = _same_again(runner, input_values, output_vars, warnings)
    if keep_outputs:
        namespace.update(output_values)

    packages = modules_in_pickle(out_dir / STATE_NAME) | set(cell.imports)
    packages |= {
        type(v).__module__.split(".")[0] for v in [*input_values.values(), *output_values.values()]
    }
    return PinResult(
        inputs=tuple(input_vars),
        outputs=tuple(output_vars),
        state=tuple(state),
        excluded=tuple(excluded),
        deterministic=deterministic,
        random_state=tuple(random_state.sources),
        requirements=tuple(resolve_distributions(packages)),
        python_version=".".join(str(p) for p in sys.version_info[:3]),
        warnings=tuple(warnings),
        notes=(choice.note,) if choice.note else (),
    )


def _run_example(runner: CellExecutor, inputs: dict[str, Any], label: str) -> dict[str, Any]:
    try:
        return runner.run(copy.deepcopy(inputs))  # a cell may change its inputs in place
    except ExecutionError as exc:
        raise CellExecutionError(
            f"{label} raised {exc.error_name} on the example inputs: {exc.error_message}",
            "\n".join(exc.traceback),
        ) from None


def _same_again(
    runner: CellExecutor, inputs: dict[str, Any], served: list[Variable], warnings: list[str]
) -> bool:
    """Run the cell a second time from the same state: do the served outputs come out equal?"""
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):  # said once already
        try:
            again = runner.run(copy.deepcopy(inputs))
            second = {v.name: encode_json(again[v.name], v.type, v.name, tensors="b64")
                      for v in served}  # fmt: skip
        except Checkpoint2SvcError as exc:
            differences = [f"the second run failed ({exc})"]
        else:
            first = {v.name: v.example for v in served}
            types = {v.name: v.type for v in served}
            differences = output_differences(first, second, types)
    if not differences:
        return True
    warnings.append(
        "the target cell gave different outputs when run twice on the same inputs from the same "
        "state (" + "; ".join(differences) + "): it is not deterministic (unseeded randomness, "
        "the clock, ...), so the service's readiness self-test checks the outputs' types and "
        "shapes, not their values. Seed it (e.g. `np.random.default_rng(0)`) to serve the "
        "notebook's values"
    )
    return False


def capture(request_path: str) -> None:
    """Capture the state and signature the request asks for; always answer in ``result.json``."""
    request_file = Path(request_path)
    out_dir = request_file.parent
    outcome: PinResult | Checkpoint2SvcError
    try:
        outcome = capture_into(PinRequest.read(request_file), out_dir)
    except Checkpoint2SvcError as exc:
        outcome = exc
    except Exception as exc:  # a bug of ours, or an object nothing foresaw: say what, not crash
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        message = (
            f"capturing the state failed ({type(exc).__name__}: {exc}); please report it with "
            "the traceback, and try --mode shared meanwhile"
        )
        outcome = CellExecutionError(message, "".join(lines))
    write_result(out_dir, outcome)
