"""The CuPy backend's elementwise kernels run on the CPU: each CUDA C source
(``cvxprox.backend.cuda_kernels.Elementwise``) compiled by the host's C++ compiler
inside the loop ``cupy.ElementwiseKernel`` generates, so that the kernels' arithmetic is
tested where there is no GPU.

What CuPy does for element ``i`` of an elementwise kernel, and this module too: each
array input parameter ``T x`` is the value ``x[i]``, each scalar input its value, each
output parameter ``T out`` a reference to ``out[i]``; ``T`` is the dtype of the first
array passed for a ``T`` parameter; the outputs are allocated with their declared types.
Only what the library's kernels use is supported: arrays of one shape (no broadcasting),
no ``raw`` parameters. The compiler is told not to contract multiplies and adds into
FMAs, so that float64 results are those of IEEE double arithmetic, operation by
operation; a GPU may contract them (the ``gpu`` tests allow for it).
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
#define __device__
#define __forceinline__ inline
"""


def compiler() -> str | None:
    """The host's C++ compiler, or None."""
    return shutil.which("g++") or shutil.which("c++")


def _params(text: str) -> list[tuple[str, str]]:
    """CuPy's ``"T x, float64 tau"`` -> [("T", "x"), ("float64", "tau")]."""
    params = []
    for item in text.split(","):
        words = item.split()
        if len(words) != 2:
            raise ValueError(f"unsupported kernel parameter {item.strip()!r}")
        params.append((words[0], words[1]))
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


def run(spec: Elementwise, *args: Any) -> np.ndarray | tuple[np.ndarray, ...]:
    """The kernel ``spec`` applied to ``args`` (NumPy arrays of one shape and Python
    scalars, in the order of ``spec.in_params``), as ``cupy.ElementwiseKernel(...)(*args)``
    on NumPy arrays: the output, or the tuple of outputs."""
    inputs, outputs = _params(spec.in_params), _params(spec.out_params)
    if len(args) != len(inputs):
        raise TypeError(f"{spec.name} takes {len(inputs)} arguments, got {len(args)}")
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"{spec.name}: arrays of one shape only, got {sorted(shapes)}")
    (shape,) = shapes
    typed = [a for (kind, _), a in zip(inputs, args, strict=True) if kind == "T"]
    t = next(a.dtype for a in typed if isinstance(a, np.ndarray))
    lines, buffers = [], []
    for k, ((kind, name), a) in enumerate(zip(inputs, args, strict=True)):
        ctype, dtype = ("T", t) if kind == "T" else _CTYPES[kind]
        if isinstance(a, np.ndarray):
            if a.dtype != dtype:
                raise TypeError(f"{spec.name}: {name} must be {np.dtype(dtype)}, got {a.dtype}")
            buffers.append(np.ascontiguousarray(a))
            lines.append(f"const {ctype} {name} = ((const {ctype}*)_args[{k}])[i];")
        else:
            buffers.append(np.array([a], dtype=dtype))
            lines.append(f"const {ctype} {name} = *((const {ctype}*)_args[{k}]);")
    results = []
    for kind, name in outputs:
        ctype, dtype = ("T", t) if kind == "T" else _CTYPES[kind]
        results.append(np.empty(shape, dtype=dtype))
        lines.append(f"{ctype} &{name} = (({ctype}*)_args[{len(buffers)}])[i];")
        buffers.append(results[-1])
    body = "\n    ".join(lines)
    source = (
        f"{_PRELUDE}typedef {_CXX_TYPES[np.dtype(t)]} T;\n"
        f'extern "C" void kernel(long long _n, void** _args) {{\n'
        f"  for (ptrdiff_t i = 0; i < _n; ++i) {{\n    {body}\n    {spec.operation}\n  }}\n}}\n"
    )
    pointers = (ctypes.c_void_p * len(buffers))(*(b.ctypes.data for b in buffers))
    _library(source).kernel(ctypes.c_longlong(int(np.prod(shape))), pointers)
    return results[0] if len(results) == 1 else tuple(results)
