"""Fused loops for hot plans: an elementwise group of the interpreter's program, compiled as one loop.

The interpreter runs a group block by block, one op at a time over register rows. For a plan that
keeps coming back (``CpuExecutor.hot_after`` runs of the same structure), ``fuse_plan`` generates,
for each large group, a Numba function that computes every op of the group for one element before
moving to the next: values live in scalar locals (machine registers), each operand is read and each
result written exactly once, and LLVM vectorizes the loop (the transcendental functions come from
``vmath``, written so that it can). Reductions accumulate exactly as in the interpreter (per block
of ``ops.BLK`` elements, NumPy's pairwise order within a block), so fused and interpreted runs give
the same numbers.

The generated source is decoded from the encoded program itself (``ops``'s layout; the scalar
expressions of ``ops.EXPR``), written to the cache directory as a module keyed by its text and the
source of everything it calls (``cache``), and compiled with ``cache=True``: a structure compiled
once is loaded from disk in later processes. Compilation runs in a background thread; until it is
done the plan keeps running on the interpreter.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import cache, ops

FUSE_MIN_ELEMENTS = 4096  # smaller groups are not worth a compile: the interpreter runs them well
SIGNATURE = "int64(int64[::1], float64[::1], int64[::1])"
_DEPENDENCIES = ("gradjit.kernels.ops", "gradjit.kernels.scalar", "gradjit.kernels.vmath", "gradjit.kernels.fuse")
_NP_DTYPE = {ops.DT_F64: "np.float64", ops.DT_F32: "np.float32", ops.DT_I64: "np.int64", ops.DT_I32: "np.int32"}
_NP_DTYPE[ops.DT_BOOL] = "np.uint8"
_FILE_T = {ops.F64: "np.float64", ops.I64: "np.int64"}


class _Program:
    """Read access to an encoded program (the layout documented in ``ops``)."""

    def __init__(self, prog: np.ndarray):
        self.p = [int(v) for v in prog]

    def instr(self, k: int) -> list[int]:
        q = self.p[ops.H_OFF_INSTR] + k * ops.IW
        return self.p[q : q + ops.IW]

    def op(self, o: int) -> list[int]:
        q = self.p[ops.H_OFF_OPS] + o * ops.OW
        return self.p[q : q + ops.OW]

    def opnd(self, i: int) -> list[int]:
        q = self.p[ops.H_OFF_OPNDS] + i * ops.PW
        return self.p[q : q + ops.PW]

    def iter(self, it: int) -> list[int]:
        q = self.p[ops.H_OFF_ITERS] + it * ops.ITW
        return self.p[q + 1 : q + 1 + self.p[q]]


def fusable(prog: np.ndarray) -> list[int]:
    """Indices of the program's elementwise groups worth compiling."""
    pr = _Program(prog)
    out = []
    for k in range(pr.p[ops.H_N_INSTR]):
        ins = pr.instr(k)
        if ins[0] == ops.K_EW and int(np.prod(pr.iter(ins[2]))) >= FUSE_MIN_ELEMENTS:
            out.append(k)
    return out


_T = re.compile(r"\bT\(")


def _cast(file: int, text: str) -> str:
    return f"np.float64({text})" if file == ops.F64 else f"np.int64({text})"


def _store_value(dtype: int, text: str) -> str:
    return f"np.uint8({text} != 0)" if dtype == ops.DT_BOOL else text


def group_source(prog: np.ndarray, k: int, name: str) -> str:
    """Source of ``name(bases, fconst, iconst)``: elementwise group ``k`` of ``prog`` as one loop nest."""
    pr = _Program(prog)
    _, _, it, o0, b0, o1, p0, p1 = pr.instr(k)
    shape = pr.iter(it)
    rank = len(shape)
    length = shape[-1]
    blk = min(ops.BLK, length)
    L: list[str] = [f"def {name}(bases, fconst, iconst):"]
    ind = "    "
    opnd = {p: pr.opnd(p) for p in range(p0, p1)}
    for p, row in opnd.items():
        slot, off, dt, span = row[ops.P_SLOT], row[ops.P_BYTE_OFF], row[ops.P_DTYPE], row[ops.P_SPAN]
        L.append(f"{ind}a{p} = numba.carray(S.as_pointer(bases[{slot}] + {off}, {_NP_DTYPE[dt]}), ({span},))")
    stride = {p: row[ops.P_STRIDES : ops.P_STRIDES + rank] for p, row in opnd.items()}
    # prologue: literals and operands constant over the iteration are named once; accumulators are filled
    value: dict[int, str] = {}  # register -> the name of the value it holds at this point of the body
    for o in range(o0, b0):
        code, f, a, b, c, _ = pr.op(o)
        if code == ops.OP_LIT:
            L.append(f"{ind}c{o} = {'fconst' if f == ops.F64 else 'iconst'}[{b}]")
            value[a] = f"c{o}"
        elif code == ops.OP_LOAD:
            L.append(f"{ind}c{o} = {_cast(f, f'a{b}[{opnd[b][ops.P_ELEM0]}]')}")
            value[a] = f"c{o}"
        elif code == ops.OP_INIT:
            const = f"{'fconst' if f == ops.F64 else 'iconst'}[{b}]"
            L.append(f"{ind}for j in range({opnd[a][ops.P_SPAN]}):")
            L.append(f"{ind}    a{a}[j] = {_store_value(opnd[a][ops.P_DTYPE], const)}")
    body = [pr.op(o) for o in range(b0, o1)]
    acc_whole = [op for op in body if op[0] == ops.OP_ACC and stride[op[4]][-1] == 0]  # folds a whole block
    for op in acc_whole:
        L.append(f"{ind}buf{op[4]} = np.empty({blk}, {_FILE_T[op[1]]})")
    # the loop nest: outer axes, then blocks of the last axis
    for d in range(rank - 1):
        L.append(f"{ind}for i{d} in range({shape[d]}):")
        ind += "    "
    for p in opnd:
        terms = [str(opnd[p][ops.P_ELEM0])] + [f"i{d} * {stride[p][d]}" for d in range(rank - 1) if stride[p][d]]
        L.append(f"{ind}o{p} = {' + '.join(terms)}")
    L.append(f"{ind}for j0 in range(0, {length}, {blk}):")
    ind += "    "
    L.append(f"{ind}n = min({blk}, {length} - j0)")
    views: dict[int, str] = {}  # operand -> how element i of this block is written
    for p in opnd:
        s = stride[p][-1]
        if s == 1:
            L.append(f"{ind}v{p} = a{p}[o{p} + j0 : o{p} + j0 + n]")
            views[p] = f"v{p}[i]"
        elif s > 1:
            L.append(f"{ind}v{p} = a{p}[o{p} + j0 * {s} : o{p} + (j0 + n - 1) * {s} + 1 : {s}]")
            views[p] = f"v{p}[i]"
        elif s == 0:
            views[p] = f"a{p}[o{p}]"
        else:
            views[p] = f"a{p}[o{p} + (j0 + i) * {s}]"
    for o, op in enumerate(body, start=b0):  # loads constant along the block leave the element loop
        if op[0] == ops.OP_LOAD and stride[op[3]][-1] == 0:
            L.append(f"{ind}h{o} = {_cast(op[1], views[op[3]])}")
    L.append(f"{ind}for i in range(n):")
    inner = ind + "    "
    for o, op in enumerate(body, start=b0):
        code, f = op[0], op[1]
        if code == ops.OP_LOAD:
            d, p = op[2], op[3]
            if stride[p][-1] == 0:
                value[d] = f"h{o}"
            else:
                L.append(f"{inner}t{o} = {_cast(f, views[p])}")
                value[d] = f"t{o}"
        elif code == ops.OP_STORE:
            d, p = op[2], op[3]
            L.append(f"{inner}{views[p]} = {_store_value(opnd[p][ops.P_DTYPE], value[d])}")
        elif code == ops.OP_ACC:
            kind, src, p = op[2], op[3], op[4]
            if stride[p][-1] == 0:
                L.append(f"{inner}buf{p}[i] = {value[src]}")
            else:
                folded = f"S.fold({kind}, {_cast(f, views[p])}, {value[src]})"
                L.append(f"{inner}{views[p]} = {_store_value(opnd[p][ops.P_DTYPE], folded)}")
        elif code == ops.OP_LIT:
            L.append(f"{inner}t{o} = {'fconst' if f == ops.F64 else 'iconst'}[{op[3]}]")
            value[op[2]] = f"t{o}"
        elif code == ops.OP_CVT:
            L.append(f"{inner}t{o} = {_cast(f, value[op[3]])}")
            value[op[2]] = f"t{o}"
        else:
            name = ops.NAME_OF_OPCODE[code]
            args = [value.get(r, "0") for r in op[3:6]][: ops.ARITY[name]]
            text = _T.sub(ops.FILE_SCALAR[f] + "(", ops.expr(name, f))  # T: the register file's type
            L.append(f"{inner}t{o} = {text.format(*args)}")
            value[op[2]] = f"t{o}"
    for op in acc_whole:  # fold each block into its accumulator, as the interpreter does
        f, kind, p = op[1], op[2], op[4]
        cur = _cast(f, f"a{p}[o{p}]")
        if kind == ops.ACC_SUM:
            total = f"{cur} + S.pairwise_sum(buf{p}, 0, n)"
            L.append(f"{ind}a{p}[o{p}] = {_store_value(opnd[p][ops.P_DTYPE], total)}")
        else:
            L.append(f"{ind}acc{p} = {cur}")  # one name per accumulator: each keeps its file's type
            L.append(f"{ind}for i in range(n):")
            L.append(f"{ind}    acc{p} = S.fold({kind}, acc{p}, buf{p}[i])")
            L.append(f"{ind}a{p}[o{p}] = {_store_value(opnd[p][ops.P_DTYPE], f'acc{p}')}")
    L.append("    return 0")
    return "\n".join(L) + "\n"


def module_source(prog: np.ndarray, groups: list[int]) -> str:
    """A module with one fused function per group (``g<k>``), decorated for Numba's disk cache."""
    head = [
        '"""Fused elementwise loops generated by gradjit.kernels.fuse (do not edit: regenerated)."""',
        "import math",
        "",
        "import numba",
        "import numpy as np",
        "",
        "from gradjit.kernels import scalar as S",
        "",
    ]
    decorator = "\n@numba.njit(cache=True, error_model='numpy', nogil=True)\n"
    parts = [decorator + group_source(prog, k, f"g{k}") for k in groups]
    deps = cache.digest(cache.source_of(*_DEPENDENCIES))
    return "\n".join(head) + "\n".join(parts) + f"\n# dependencies: sha256={deps}\n"


def compile_groups(prog: np.ndarray, groups: list[int]) -> dict[int, Callable]:
    """The fused functions of ``groups`` (compiled now, or loaded from the disk cache)."""
    src = module_source(prog, groups)

    def warm(module: Any) -> None:
        for k in groups:
            getattr(module, f"g{k}").compile(SIGNATURE)

    module = cache.load_module("fused", src, warm=warm)
    return {k: getattr(module, f"g{k}") for k in groups}


def fused_steps(steps: list[tuple], compiled: dict[int, Callable]) -> list[tuple]:
    """The plan's steps with its compiled groups run as fused functions, the rest as before."""
    out: list[tuple] = []
    for step in steps:
        if step[0] != "seg":
            out.append(step)
            continue
        start = step[1]
        for k in range(step[1], step[2]):
            if k in compiled:
                if k > start:
                    out.append(("seg", start, k))
                out.append(("fused", compiled[k]))
                start = k + 1
        if start < step[2]:
            out.append(("seg", start, step[2]))
    return out


class Fuser:
    """Compiles a plan's fused groups once, on this thread or a background one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False
        self.steps: list[tuple] | None = None  # set once the fused code is ready
        self.error: BaseException | None = None

    def start(self, plan: Any, background: bool) -> None:
        with self.lock:
            if self.started:
                return
            self.started = True
        groups = fusable(plan.prog)
        if not groups:
            return
        if background:
            threading.Thread(target=self._compile, args=(plan, groups), daemon=True, name="gradjit-fuse").start()
        else:
            self._compile(plan, groups)

    def _compile(self, plan: Any, groups: list[int]) -> None:
        try:
            self.steps = fused_steps(plan.steps, compile_groups(plan.prog, groups))
        except Exception as exc:  # never wrong, only slower: the interpreter keeps running the plan
            self.error = exc
            warnings.warn(f"gradjit: fused loops failed to compile ({exc}); the plan stays interpreted", stacklevel=2)
