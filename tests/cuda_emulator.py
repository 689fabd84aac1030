"""The CuPy backend's elementwise kernels run on the CPU: each CUDA C source
(``cvxprox.backend.cuda_kernels.Elementwise``) compiled by the host's C++ compiler
inside the loop ``cupy.ElementwiseKernel`` generates, so that the kernels' arithmetic is
tested where there is no GPU.

What CuPy does for element ``i`` of an elementwise kernel, and this module too: each
array input parameter ``T x`` is the value ``x[i]``, each scalar input its value, each
output parameter ``T out`` a reference to ``out[i]``; ``T`` is the dtype of the first
array passed for a ``T`` parameter; the outputs are allocated with their declared types.
A ``raw`` array parameter is a pointer the body indexes itself. Outputs may be passed
after the inputs, as CuPy allows, and are then written in place. Only what the
library's kernels use is supported: the non-raw arrays of one shape (no broadcasting).
The compiler is told not to contract multiplies and adds into FMAs, so that float64
results are those of IEEE double arithmetic, operation by operation; a GPU may contract
them (the ``gpu`` tests allow for it).
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from cvxprox.backend.cuda_kernels import Elementwise

_CTYPES = {
    "float64": ("double", np.float64),
    "float32": ("float", np.float32),
    "bool": ("bool", np.bool_),
    "int32": ("int", np.int32),
    "int64": ("long long", np.int64),
}
_CXX_TYPES = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}
_PRELUDE = """#include <cmath>
#include <cstddef>
using std::sqrt;
#define __device__
#define __forceinline__ inline
"""


def compiler() -> str | None:
    """The host's C++ compiler, or None."""
    return shutil.which("g++") or shutil.which("c++")


def _params(text: str) -> list[tuple[str, str, bool]]:
    """CuPy's ``"T x, raw T y, float64 tau"`` -> [("T", "x", False), ("T", "y", True),
    ("float64", "tau", False)]."""
    params = []
    for item in text.split(","):
        words = item.split()
        raw = len(words) == 3 and words[0] == "raw"
        if len(words) != 2 + raw:
            raise ValueError(f"unsupported kernel parameter {item.strip()!r}")
        params.append((words[-2], words[-1], raw))
    return params


@cache
def _library(source: str) -> ctypes.CDLL:
    """``source`` compiled into a shared library (cached by its hash)."""
    folder = Path(tempfile.gettempdir()) / "cvxprox_cuda_emulator"
    folder.mkdir(exist_ok=True)
    stem = hashlib.sha256(source.encode()).hexdigest()[:20]
    library = folder / f"{stem}.so"
    if not library.exists():
        code = folder / f"{stem}.cpp"
        code.write_text(source)
        command = [compiler(), "-O2", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off"]
        partial = folder / f"{stem}.{id(source)}.so"
        subprocess.run([*command, "-o", str(partial), str(code)], check=True)
        partial.replace(library)
    return ctypes.CDLL(str(library))


def kernel_source(spec: Elementwise, t: np.dtype, is_array: list[bool], cuda: bool) -> str:
    """The function that runs ``spec`` over ``_n`` elements with ``T`` = ``t``: the input
    parameters flagged in ``is_array`` read from arrays, the others scalars, every
    argument behind a pointer in ``_args`` (inputs, then outputs). With ``cuda`` a
    ``__global__`` kernel of one thread per element, else a C function with the loop."""
    inputs, outputs = _params(spec.in_params), _params(spec.out_params)
    lines = []
    for k, ((kind, name, raw), array) in enumerate(zip(inputs, is_array, strict=True)):
        ctype = "T" if kind == "T" else _CTYPES[kind][0]
        if raw:
            lines.append(f"const {ctype}* {name} = (const {ctype}*)_args[{k}];")
        else:
            at = "[i]" if array else "[0]"
            lines.append(f"const {ctype} {name} = ((const {ctype}*)_args[{k}]){at};")
    for k, (kind, name, raw) in enumerate(outputs, start=len(inputs)):
        ctype = "T" if kind == "T" else _CTYPES[kind][0]
        if raw:
            lines.append(f"{ctype}* {name} = ({ctype}*)_args[{k}];")
        else:
            lines.append(f"{ctype} &{name} = (({ctype}*)_args[{k}])[i];")
    body = "\n    ".join([*lines, spec.operation])
    ctype = _CXX_TYPES[np.dtype(t)]
    if cuda:
        return (
            f"namespace {spec.name}_{ctype} {{\n{spec.preamble}\ntypedef {ctype} T;\n"
            f"__global__ void kernel(long long _n, void** _args) {{\n"
            f"  ptrdiff_t i = (ptrdiff_t)blockIdx.x * blockDim.x + threadIdx.x;\n"
            f"  if (i < _n) {{\n    {body}\n  }}\n}}\n}}\n"
        )
    return (
        f"{spec.preamble}\ntypedef {ctype} T;\n"
        f'extern "C" void kernel(long long _n, void** _args) {{\n'
        f"  for (ptrdiff_t i = 0; i < _n; ++i) {{\n    {body}\n  }}\n}}\n"
    )


def run(
    spec: Elementwise, *args: Any, size: int | None = None
) -> np.ndarray | tuple[np.ndarray, ...]:
    """The kernel ``spec`` applied to ``args`` (NumPy arrays and Python scalars in the
    order of ``spec.in_params``, then optionally the outputs), as
    ``cupy.ElementwiseKernel(...)(*args, size=size)`` on NumPy arrays: the output, or the
    tuple of outputs. ``size``: the element count when every array is raw."""
    inputs, outputs = _params(spec.in_params), _params(spec.out_params)
    if len(args) not in (len(inputs), len(inputs) + len(outputs)):
        raise TypeError(f"{spec.name} takes {len(inputs)} arguments, got {len(args)}")
    given = list(args[len(inputs) :])
    params = inputs + outputs[: len(given)]
    arrays = [a for (_, _, raw), a in zip(params, args, strict=True) if not raw]
    shapes = {a.shape for a in arrays if isinstance(a, np.ndarray)}
    if size is not None:
        shapes.add((size,))
    if len(shapes) != 1:
        raise ValueError(f"{spec.name}: non-raw arrays of one shape only, got {sorted(shapes)}")
    (shape,) = shapes
    typed = [a for (kind, _, _), a in zip(params, args, strict=True) if kind == "T"]
    t = next(a.dtype for a in typed if isinstance(a, np.ndarray))
    buffers = []
    for (kind, name, _), a in zip(params, args, strict=True):
        dtype = t if kind == "T" else _CTYPES[kind][1]
        if isinstance(a, np.ndarray):
            if a.dtype != dtype or not a.flags.c_contiguous:
                raise TypeError(f"{spec.name}: {name} must be contiguous {np.dtype(dtype)}")
            buffers.append(a)
        else:
            buffers.append(np.array([a], dtype=dtype))
    results = given + [
        np.empty(shape, dtype=t if kind == "T" else _CTYPES[kind][1])
        for kind, _, _ in outputs[len(given) :]
    ]
    buffers += results[len(given) :]
    is_array = [isinstance(a, np.ndarray) for a in args[: len(inputs)]]
    source = _PRELUDE + kernel_source(spec, t, is_array, cuda=False)
    pointers = (ctypes.c_void_p * len(buffers))(*(b.ctypes.data for b in buffers))
    _library(source).kernel(ctypes.c_longlong(int(np.prod(shape))), pointers)
    return results[0] if len(results) == 1 else tuple(results)


def nvcc_compiles(specs: list[Elementwise], folder: Path) -> subprocess.CompletedProcess:
    """``nvcc -c`` of every kernel in ``specs`` for float and double, as ``__global__``
    kernels with their ``T`` parameters as arrays: CUDA's own compiler accepts the
    sources (no GPU is needed to compile)."""
    parts = ["#include <cstddef>\n"]
    for spec in specs:
        is_array = [kind == "T" for kind, _, _ in _params(spec.in_params)]
        for t in (np.float32, np.float64):
            parts.append(kernel_source(spec, np.dtype(t), is_array, cuda=True))
    code = folder / "kernels.cu"
    code.write_text("".join(parts))
    command = [shutil.which("nvcc"), "-c", "-o", str(folder / "kernels.o"), str(code)]
    return subprocess.run(command, capture_output=True, text=True, check=False)
