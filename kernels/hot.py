"""Hot plans compiled whole: every instruction of a plan's segments as specialised machine code.

The interpreter (``interp``) decodes each instruction at run time: for a list of many small arrays
(an RNN's 1796 equations over 16 elements) decoding, not arithmetic, is the cost. When a plan keeps
coming back (``HOT_AFTER`` runs and ``HOT_SECONDS`` spent interpreting it), ``compile_plan`` generates
one Numba function per *distinct* instruction, a **template**: an elementwise group as one loop nest
(``fuse.group_source``), a small matmul as loops, a guard as a comparison, with shapes, strides,
dtypes and ops written into the source as constants. What differs between instructions of the same
template (the memory slot and byte offset of each operand, the index of each constant, the last
axis's length) is read from a table (``tab``), so the hundred steps of an unrolled loop share one
template, and compile time grows with the number of distinct templates, not with the length of the
list. A driver (``_walk``) walks table rows and calls each row's template through a binary tree of
comparisons; a row is ``[template, next row, fields...]``. Entry points: ``run_whole`` (the plan is
one compiled run: it sets the inputs' addresses and single values, then runs every row) or, for a
plan with host steps, ``set_inputs`` and ``run(tab, bases, fconst, iconst, scratch, q, stop)`` per
compiled run.

Invariants:

- Same numbers as the interpreter, bit for bit: a template computes the same operations in the same
  order (a matmul accumulates each output in the interpreter's order: 8 lanes when both operands are
  contiguous along the contraction, ``scalar.dot_lanes``, else in sequence from ``t = 0``; reductions
  fold per block of ``ops.BLK`` elements in NumPy's pairwise order).
- Guards are checked where the interpreter checks them; a failing guard returns its index, and the
  executor raises ``GuardFailure`` exactly as for the interpreter.
- Instructions without a template (scans; any template beyond ``MAX_TEMPLATES``) stay interpreted:
  the plan's segments are split around them.
- Nothing here runs on a call's critical path: the executor starts ``Hot.start`` in a background
  thread and keeps interpreting until ``Hot.compiled`` is set; a compile failure warns and changes
  nothing. The module is cached on disk by its text, which includes the entry point's argument types
  (``cache``), so a later process loads it.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import cache, ops
from .fuse import _NP_DTYPE, Names, Program, group_source

__all__ = ["Hot", "PlanSource", "compile_plan", "out_block", "wait_for_background_compiles"]
__all__ += ["HOT_AFTER", "HOT_SECONDS", "SIGNATURE"]

# A structure is compiled once it has run HOT_AFTER times and spent HOT_SECONDS in the interpreter
# (a compile costs about a second of CPU, in a background thread: a plan run a few times, or cheaply,
# is not worth it). CpuExecutor reads HOT_SECONDS at each check; a benchmark of steady state sets it to 0.
HOT_AFTER = 8
HOT_SECONDS = 0.002
MAX_TEMPLATES = 256  # distinct templates compiled per plan (the rest of the instructions stay interpreted)
SIGNATURE = "int64(int64[::1], int64[::1], float64[::1], int64[::1], float64[::1], int64, int64)"
_DEPENDENCIES = (
    "gradjit.kernels.ops",
    "gradjit.kernels.scalar",
    "gradjit.kernels.vmath",
    "gradjit.kernels.fuse",
    "gradjit.kernels.hot",
)
# Templates take addresses (integers in registers): an array argument is seven words to pass, and the
# call of each row's template was a fifth of W4's run.
_ARGS = "ta, q, ba, fa, ia, sa"
_PROLOGUE = """
    tab = S.as_pointer(ta, np.int64)
    bases = S.as_pointer(ba, np.int64)
    fconst = S.as_pointer(fa, np.float64)
    iconst = S.as_pointer(ia, np.int64)"""


class TableNames(Names):
    """Names for template code: addresses and constants are fields of the instruction's table row."""

    args = _ARGS
    prologue = _PROLOGUE
    ret = "-1"  # the driver's status: no guard failed

    def __init__(self) -> None:
        self.row: list[int] = []
        self.bufs = 0  # reduction buffers of BLK elements the template takes from the scratch area

    def field(self, value: int) -> str:
        self.row.append(int(value))
        return f"tab[q + {len(self.row) - 1}]"

    def addr(self, slot: int, off: int) -> str:
        return f"bases[{self.field(slot)}] + {self.field(off)}"

    def const(self, file: int, k: int) -> str:
        return f"{'fconst' if file == ops.F64 else 'iconst'}[{self.field(k)}]"

    def length(self, n: int) -> str:
        # The last axis's length read at run time: with a constant, LLVM unrolls a short row loop and
        # vectorizes across rows with gathers and scatters instead (4-5x slower on 16x16 groups).
        return self.field(n)

    def buf(self, i: int, blk: int, file: int) -> str:
        self.bufs = max(self.bufs, i + 1)
        return f"numba.carray(S.as_pointer(sa + {8 * i * ops.BLK}, {_FILE_DT[file]}), ({blk},))"


_FILE_DT = {ops.F64: "np.float64", ops.I64: "np.int64"}


def _operand(pr: Program, p: int, names: TableNames, var: str) -> tuple[str, list[int]]:
    """Lines naming operand ``p``'s address (``<var>_at``) and a typed pointer to it (``<var>``, as
    ``fuse.group_source`` does), and the operand's row."""
    row = pr.opnd(p)
    at = f"    {var}_at = {names.addr(row[ops.P_SLOT], row[ops.P_BYTE_OFF])}"
    return f"{at}\n    {var} = S.as_pointer({var}_at, {_NP_DTYPE[row[ops.P_DTYPE]]})", row


def matmul_source(pr: Program, k: int, name: str, names: TableNames) -> str:
    """``out[.., i, j] = sum_t a[.., i, t] * b[.., t, j]`` with constant shapes and strides, accumulated
    from ``t = 0`` in float64 as the interpreter does (``interp._mm``)."""
    _, _, it, pa, pb, po, _, _ = pr.instr(k)
    shape = pr.iter(it)
    rank = len(shape)
    nb = rank - 3
    m, n, kk = shape[-3:]
    L = [f"def {name}({names.args}):{names.prologue}"]
    rows = {}
    for var, p in (("a", pa), ("b", pb), ("o", po)):
        line, rows[var] = _operand(pr, p, names, var)
        L.append(line)
    st = {v: r[ops.P_STRIDES : ops.P_STRIDES + rank] for v, r in rows.items()}
    isz = {v: 8 if r[ops.P_DTYPE] == ops.DT_F64 else 4 for v, r in rows.items()}
    ind = "    "
    for d in range(nb):
        L.append(f"{ind}for i{d} in range({shape[d]}):")
        ind += "    "
    for v in ("a", "b", "o"):
        terms = [str(rows[v][ops.P_ELEM0])] + [f"i{d} * {st[v][d]}" for d in range(nb) if st[v][d]]
        L.append(f"{ind}{v}0 = {' + '.join(terms)}")
    sai, sak = st["a"][nb], st["a"][nb + 2]
    sbj, sbk = st["b"][nb + 1], st["b"][nb + 2]
    soi, soj = st["o"][nb], st["o"][nb + 1]
    L.append(f"{ind}for i in range({m}):")
    L.append(f"{ind}    for j in range({n}):")
    if sak == 1 and sbk == 1:  # both rows contiguous: 8 lanes (``scalar.dot_lanes``), as the interpreter
        pa = f"S.as_pointer(a_at + (a0 + i * {sai}) * {isz['a']}, {_NP_DTYPE[rows['a'][ops.P_DTYPE]]})"
        pb = f"S.as_pointer(b_at + (b0 + j * {sbj}) * {isz['b']}, {_NP_DTYPE[rows['b'][ops.P_DTYPE]]})"
        L.append(f"{ind}        acc = S.dot_lanes({pa}, {pb}, {kk})")
    else:
        L.append(f"{ind}        acc = 0.0")
        L.append(f"{ind}        for t in range({kk}):")
        a_t, b_t = f"a[a0 + i * {sai} + t * {sak}]", f"b[b0 + j * {sbj} + t * {sbk}]"
        L.append(f"{ind}            acc += np.float64({a_t}) * np.float64({b_t})")
    L.append(f"{ind}        o[o0 + i * {soi} + j * {soj}] = acc")
    L.append("    return -1")
    return "\n".join(L) + "\n"


def guard_source(pr: Program, k: int, name: str, names: TableNames) -> str:
    """The guard's value (its operand's one element) against the observed value, as ``interp._guard``."""
    _, p, kind, gi, observed, file, _, _ = pr.instr(k)
    line, row = _operand(pr, p, names, "a")
    value = f"np.float64(a[{row[ops.P_ELEM0]}])" if file == ops.F64 else f"np.int64(a[{row[ops.P_ELEM0]}])"
    obs, index = names.field(observed), names.field(gi)
    test = f"(v != 0) == ({obs} != 0)" if kind == ops.G_BOOL else f"v == {obs}"
    return f"def {name}({names.args}):{names.prologue}\n{line}\n    v = {value}\n    return -1 if {test} else {index}\n"


def instruction_source(pr: Program, k: int) -> tuple[str, list[int], int] | None:
    """Instruction ``k`` as a template named ``NAME``: (source, its table fields, scratch buffers), or
    None where the interpreter keeps it."""
    names = TableNames()
    kind = pr.instr(k)[0]
    if kind == ops.K_EW:
        src = group_source(pr, k, "NAME", names)
    elif kind == ops.K_MATMUL:
        src = matmul_source(pr, k, "NAME", names)
    elif kind == ops.K_GUARD:
        src = guard_source(pr, k, "NAME", names)
    else:
        return None
    return src, names.row, names.bufs


def _tree(ids: list[int], ind: str) -> list[str]:
    """A binary tree of comparisons on ``t`` calling template ``t<id>`` for each id in ``ids``."""
    if len(ids) == 1:
        return [f"{ind}s = t{ids[0]}(ta, q + 2, ba, fa, ia, sa)"]
    mid = len(ids) // 2
    return [f"{ind}if t < {ids[mid]}:", *_tree(ids[:mid], ind + "    "), f"{ind}else:", *_tree(ids[mid:], ind + "    ")]


class PlanSource:
    """A plan's templates, driver module and table (see the module docstring)."""

    def __init__(self, plan: Any, max_templates: int = MAX_TEMPLATES):
        pr = Program(plan.prog)
        self.plan = plan
        self.n_instr = pr.p[ops.H_N_INSTR]
        by_text: dict[str, int] = {}
        texts: list[str] = []
        self.rows: dict[int, list[int]] = {}  # instruction -> [template, fields...]
        self.scratch = 0
        for k in range(self.n_instr):
            made = instruction_source(pr, k)
            if made is None:
                continue
            src, fields, bufs = made
            tid = by_text.get(src)
            if tid is None:
                if len(texts) >= max_templates:
                    continue
                tid = by_text[src] = len(texts)
                texts.append(src)
            self.rows[k] = [tid, *fields]
            self.scratch = max(self.scratch, bufs * ops.BLK)
        self.n_templates = len(texts)
        # The whole plan is one compiled run (no host steps, every instruction compiled): ``run_whole``
        # also takes the inputs and sets their addresses itself (cheaper than reading them in Python).
        self.whole = len(self.rows) == self.n_instr and all(st[0] == "seg" for st in plan.steps)
        decorator = "@numba.njit(error_model='numpy', nogil=True)\n"
        parts = [decorator + text.replace("def NAME(", f"def t{i}(", 1) for i, text in enumerate(texts)]
        self.source = _HEAD + "\n\n".join(parts) + "\n\n" + self._driver(len(texts))
        # the argument types are part of the text: two plans whose code is the same may differ in the
        # ranks of their inputs, and a module is compiled for one signature
        self.source += self._entries() + f"\n# entry{self.entry_signature()}\n"
        self.source += f"\n# dependencies: sha256={cache.digest(cache.source_of(*_DEPENDENCIES))}\n"

    @staticmethod
    def _driver(n: int) -> str:
        body = _tree(list(range(n)), "        ") if n else ["        s = -1"]
        return _DRIVER.replace("        # TREE\n", "\n".join(body) + "\n")

    def _entries(self) -> str:
        """``run_whole`` (a whole plan: the inputs, then every row) or ``set_inputs`` (a plan with host
        steps: the inputs only, before the executor's steps); both set the output block's address, the
        inputs' addresses and the single values copied into the arena."""
        plan = self.plan
        xs = [f"x{i}" for i in range(len(plan.kernel_inputs))]
        ss = [f"s{i}" for i in range(len(plan.arena_inputs))]
        args = ", ".join(["bases, out", *xs, *ss])
        L = ["", "", "@numba.njit(error_model='numpy', nogil=True)", f"def _set({args}):"]
        L.append("    bases[1] = out.ctypes.data")
        for x, r in zip(xs, plan.kernel_inputs):
            L.append(f"    bases[{plan.ext_slot[r]}] = {x}.ctypes.data")
        for s_, r in zip(ss, plan.arena_inputs):
            lay = plan.layouts[r]
            dt = _NP_DTYPE[ops.DTYPE_CODE[lay.dtype]]
            if r in plan.consts:  # a constant's one element, read here (it may change in place)
                s_ = f"S.as_pointer({s_}.ctypes.data, {dt})[0]"
            value = f"np.uint8({s_} != 0)" if lay.dtype == np.bool_ else f"{dt}({s_})"
            off = plan.root_off[r] + lay.offset * lay.dtype.itemsize
            L.append(f"    S.as_pointer(bases[0] + {off}, {dt})[0] = {value}")
        L += ["", "", "@numba.njit(cache=True, error_model='numpy', nogil=True)"]
        if self.whole:
            L.append(f"def run_whole(tab, fconst, iconst, scratch, {args}):")
            L.append(f"    _set({args})")
            L.append("    return _walk(*_addresses(tab, bases, fconst, iconst, scratch), 0, tab.shape[0])")
        else:
            L.append(f"def set_inputs({args}):")
            L.append(f"    _set({args})")
            L.append("    return 0")
        return "\n".join(L) + "\n"

    def entry_signature(self) -> tuple:
        """The argument types of ``run_whole`` (``tab, fconst, iconst, scratch``, then those of
        ``set_inputs``) or of ``set_inputs``: the memory table, the output block, the inputs
        (C-contiguous, their dtypes), the single values (float64 or int64 by register file)."""
        from numba import types

        plan = self.plan
        i8, f8 = types.int64[::1], types.float64[::1]
        block = out_block(plan)
        out_t = types.uint8[::1] if block is None else types.Array(numba_dtype(block[1]), len(block[0]), "C")
        sig = [i8, f8, i8, f8] if self.whole else []  # tab, fconst, iconst, scratch
        sig += [i8, out_t]
        for r in plan.kernel_inputs:
            lay = plan.layouts[r]
            # read-only: writeable arrays convert to it, and read-only inputs (broadcasts, captured
            # constants) need no copy; the program never writes to an input
            sig.append(types.Array(numba_dtype(lay.dtype), len(lay.shape), "C", readonly=True))
        for r in plan.arena_inputs:
            lay = plan.layouts[r]
            if r in plan.consts:  # a single-element array, passed as it is
                sig.append(types.Array(numba_dtype(lay.dtype), len(lay.shape), "C", readonly=True))
            else:
                sig.append(types.float64 if scalar_file(lay.dtype) == ops.F64 else types.int64)
        return tuple(sig)

    def steps(self, run: Callable) -> tuple[np.ndarray, list[tuple]]:
        """The table, and the plan's steps with each interpreter segment split into compiled runs
        ``("hot", run, tab, q0, q1)`` (table rows ``q0`` to ``q1``) and interpreted runs ``("seg", k0, k1)``."""
        tab: list[int] = []
        runs: list[tuple] = []
        for step in self.plan.steps:
            if step[0] != "seg":
                runs.append(step)
                continue
            k, stop = step[1], step[2]
            while k < stop:
                k0 = k
                if k not in self.rows:
                    while k < stop and k not in self.rows:
                        k += 1
                    runs.append(("seg", k0, k))
                    continue
                q0 = len(tab)
                while k < stop and k in self.rows:
                    row = self.rows[k]
                    tab += [row[0], len(tab) + 1 + len(row), *row[1:]]
                    k += 1
                runs.append(("hot", q0, len(tab)))
        table = np.array(tab or [0], np.int64)
        out = [("hot", run, table, r[1], r[2]) if r[0] == "hot" else r for r in runs]
        return table, out


def out_block(plan: Any) -> tuple[tuple[int, ...], np.dtype, bool] | None:
    """(shape, dtype, single) of the output block the executor allocates for a compiled plan: the one
    output array when there is one output root (``single``), else a 1-D array of the outputs' dtype
    when they share one (results are slices of it: cheaper than NumPy views of bytes); None: bytes."""
    from .plan import OUT

    roots = [r for r, kind in plan.root_kind.items() if kind == OUT]
    if len(roots) == 1 and plan.root_off[roots[0]] == 0:
        lay = plan.layouts[roots[0]]
        return lay.shape, lay.dtype, True
    dtypes = {plan.layouts[r].dtype for r in roots}
    if len(dtypes) != 1:
        return None
    dtype = dtypes.pop()
    return (plan.out_bytes // dtype.itemsize,), dtype, False  # offsets are multiples of plan.ALIGN


def numba_dtype(dtype: np.dtype) -> Any:
    import numba

    return numba.from_dtype(np.dtype(dtype))


def scalar_file(dtype: np.dtype) -> int:
    """The register file a single input value is passed to ``run_whole`` in."""
    return ops.FILE_OF_DTYPE[ops.DTYPE_CODE[np.dtype(dtype)]]


_HEAD = '''"""Hot plan compiled whole, generated by gradjit.kernels.hot (do not edit: regenerated)."""
import math

import numba
import numpy as np

from gradjit.kernels import scalar as S


'''

_DRIVER = '''@numba.njit(error_model='numpy', nogil=True)
def _addresses(tab, bases, fconst, iconst, scratch):
    return tab.ctypes.data, bases.ctypes.data, fconst.ctypes.data, iconst.ctypes.data, scratch.ctypes.data


@numba.njit(error_model='numpy', nogil=True)
def _walk(ta, ba, fa, ia, sa, q, stop):
    tv = S.as_pointer(ta, np.int64)
    while q < stop:
        t = tv[q]
        # TREE
        if s >= 0:
            return s
        q = tv[q + 1]
    return -1


@numba.njit(cache=True, error_model='numpy', nogil=True)
def run(tab, bases, fconst, iconst, scratch, q, stop):
    """Run table rows ``q`` to ``stop``: -1, or the index of the first guard that does not hold."""
    return _walk(*_addresses(tab, bases, fconst, iconst, scratch), q, stop)
'''


class Compiled:
    """A hot plan's compiled code: ``run_whole`` when the plan is one compiled run, else ``steps`` (the
    plan's steps with compiled runs) for the executor. Only the entry point in use is compiled: each
    one links and optimizes every template again."""

    def __init__(self, src: PlanSource, module: Any):
        self.tab, self.steps = src.steps(module.run)
        self.scratch = src.scratch
        self.run_whole = module.run_whole if src.whole else None
        self.set_inputs = None if src.whole else module.set_inputs
        self.files = [scalar_file(src.plan.layouts[r].dtype) for r in src.plan.arena_inputs]


def compile_plan(plan: Any) -> Compiled | None:
    """The plan's compiled code (compiled now, or loaded from the disk cache); None if nothing compiles."""
    src = PlanSource(plan)
    if not src.rows:
        return None

    def warm(module: Any) -> None:
        if src.whole:
            entries = [(module.run_whole, src.entry_signature())]
        else:
            entries = [(module.run, SIGNATURE), (module.set_inputs, src.entry_signature())]
        for entry, sig in entries:
            entry.compile(sig)
            entry.disable_compile()  # a call with other types fails instead of compiling

    return Compiled(src, cache.load_module("hot", src.source, warm=warm))


_THREADS: list[threading.Thread] = []
_THREADS_LOCK = threading.Lock()


def wait_for_background_compiles(timeout: float | None = None) -> None:
    """Wait for the compiles started in background threads (benchmarks call it before timing steady
    state; a program never needs to)."""
    while True:
        with _THREADS_LOCK:
            alive = [t for t in _THREADS if t.is_alive()]
            _THREADS[:] = alive
        if not alive:
            return
        for t in alive:
            t.join(timeout)
        if timeout is not None:
            return


class Hot:
    """Compiles a plan whole once, on this thread or a background one (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False
        self.compiled: Compiled | None = None  # set once the compiled code is ready
        self.error: BaseException | None = None

    def start(self, plan: Any, background: bool) -> None:
        with self.lock:
            if self.started:
                return
            self.started = True
        if background:
            t = threading.Thread(target=self._compile, args=(plan,), daemon=True, name="gradjit-hot")
            with _THREADS_LOCK:
                _THREADS.append(t)
            t.start()
        else:
            self._compile(plan)

    def _compile(self, plan: Any) -> None:
        try:
            self.compiled = compile_plan(plan)
        except Exception as exc:  # never wrong, only slower: the interpreter keeps running the plan
            self.error = exc
            warnings.warn(f"gradjit: compiling a hot plan failed ({exc}); it stays interpreted", stacklevel=2)
