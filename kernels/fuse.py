"""Fused loops: an elementwise group of the interpreter's program as one Numba loop nest (source text).

The interpreter runs a group block by block, one op at a time over register rows. ``group_source``
writes the same group as a function that computes every op of the group for one element before
moving to the next: values live in scalar locals (machine registers), each operand is read and each
result written exactly once, and LLVM vectorizes the loop (the transcendental functions come from
``vmath``, written so that it can). Reductions accumulate exactly as in the interpreter (per block
of ``ops.BLK`` elements, NumPy's pairwise order within a block), so fused and interpreted runs give
the same numbers.

The source is decoded from the encoded program itself (``ops``'s layout; the scalar expressions of
``ops.EXPR``), with operands and ops numbered from the group's first, so that the same group
anywhere in any program gives the same text. How the code reaches memory, constants and scratch
buffers is the caller's (``names``): ``hot`` reads them from a table, so that one compiled function
(a template) serves every group of the same structure.
"""

from __future__ import annotations

import re

import numpy as np

from . import ops

_NP_DTYPE = {ops.DT_F64: "np.float64", ops.DT_F32: "np.float32", ops.DT_I64: "np.int64", ops.DT_I32: "np.int32"}
_NP_DTYPE[ops.DT_BOOL] = "np.uint8"
_FILE_T = {ops.F64: "np.float64", ops.I64: "np.int64"}


class Program:
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


_T = re.compile(r"\bT\(")


def _cast(file: int, text: str, dtype: int = -1) -> str:
    """``text`` (of memory ``dtype``, if known) as a value of register file ``file``."""
    if (dtype, file) in ((ops.DT_F64, ops.F64), (ops.DT_I64, ops.I64)):
        return text  # already that type: no call to type and lower (compile time is per statement)
    return f"np.float64({text})" if file == ops.F64 else f"np.int64({text})"


def _store_value(dtype: int, text: str) -> str:
    return f"np.uint8({text} != 0)" if dtype == ops.DT_BOOL else text


class Names:
    """How generated code reaches memory and constants (``hot.TableNames`` is the one in use)."""

    args = "bases, fconst, iconst"  # the function's parameters
    prologue = ""  # lines the function starts with
    ret = "0"  # what it returns

    def addr(self, slot: int, off: int) -> str:
        """The address of an operand: ``bases[slot] + off``."""
        return f"bases[{slot}] + {off}"

    def const(self, file: int, k: int) -> str:
        """Constant ``k`` of register file ``file``."""
        return f"{'fconst' if file == ops.F64 else 'iconst'}[{k}]"

    def buf(self, i: int, blk: int, file: int) -> str:
        """Reduction buffer ``i`` of ``blk`` elements."""
        return f"np.empty({blk}, {_FILE_T[file]})"

    def length(self, n: int) -> str:
        """The length of the last iteration axis."""
        return str(n)


def group_source(prog: np.ndarray | Program, k: int, name: str, names: Names | None = None) -> str:
    """Source of ``name(<names.args>)``: elementwise group ``k`` of ``prog`` as one loop nest
    (``names``: how the source reads addresses, constants and buffers; ``Names()`` by default)."""
    names = names or Names()
    pr = prog if isinstance(prog, Program) else Program(prog)
    _, _, it, o0, b0, o1, p0, p1 = pr.instr(k)
    shape = pr.iter(it)
    rank = len(shape)
    length = shape[-1]
    blk = min(ops.BLK, length)
    L: list[str] = [f"def {name}({names.args}):{names.prologue}"]
    ind = "    "
    # operands and ops numbered from the group's first (the same group anywhere gives the same text)
    opnd = {p - p0: pr.opnd(p) for p in range(p0, p1)}

    def op_at(o: int) -> list[int]:
        op = pr.op(o)
        field = {ops.OP_LOAD: 3, ops.OP_STORE: 3, ops.OP_ACC: 4, ops.OP_INIT: 2}.get(op[0])
        if field is not None:
            op[field] -= p0
        return op

    # Operands are typed pointers, not arrays: an element access is one load or store (an array access
    # is a struct, a wraparound test and a bounds computation, and Numba's compile time grows with the
    # size of the code it lowers). The planner guarantees every index is inside the operand's span.
    for p, row in opnd.items():
        slot, off, dt = row[ops.P_SLOT], row[ops.P_BYTE_OFF], row[ops.P_DTYPE]
        L.append(f"{ind}a{p} = S.as_pointer({names.addr(slot, off)}, {_NP_DTYPE[dt]})")
    stride = {p: row[ops.P_STRIDES : ops.P_STRIDES + rank] for p, row in opnd.items()}
    # prologue: literals and operands constant over the iteration are named once; accumulators are filled
    value: dict[int, str] = {}  # register -> the name of the value it holds at this point of the body
    for o in range(b0 - o0):
        code, f, a, b, c, _ = op_at(o0 + o)
        if code == ops.OP_LIT:
            L.append(f"{ind}c{o} = {names.const(f, b)}")
            value[a] = f"c{o}"
        elif code == ops.OP_LOAD:
            L.append(f"{ind}c{o} = {_cast(f, f'a{b}[{opnd[b][ops.P_ELEM0]}]', opnd[b][ops.P_DTYPE])}")
            value[a] = f"c{o}"
        elif code == ops.OP_INIT:
            const = names.const(f, b)
            L.append(f"{ind}for j in range({opnd[a][ops.P_SPAN]}):")
            L.append(f"{ind}    a{a}[j] = {_store_value(opnd[a][ops.P_DTYPE], const)}")
    body = [op_at(o) for o in range(b0, o1)]
    acc_whole = [op for op in body if op[0] == ops.OP_ACC and stride[op[4]][-1] == 0]  # folds a whole block
    for i, op in enumerate(acc_whole):
        L.append(f"{ind}buf{op[4]} = {names.buf(i, blk, op[1])}")
    if acc_whole:
        L.append(f"{ind}zero = {names.length(0)}")
    # the loop nest: outer axes, then blocks of the last axis (a rank-1 iteration of one block: one loop)
    nest_start = len(L)
    invariant_pow: list[tuple[int, str]] = []  # (line, exponent name) of powers by a constant exponent
    for d in range(rank - 1):
        L.append(f"{ind}for i{d} in range({shape[d]}):")
        ind += "    "
    base: dict[int, str] = {}  # operand -> its element 0 in this iteration of the outer axes
    for p in opnd:
        if rank == 1:
            base[p] = str(opnd[p][ops.P_ELEM0])
            continue
        terms = [str(opnd[p][ops.P_ELEM0])] + [f"i{d} * {stride[p][d]}" for d in range(rank - 1) if stride[p][d]]
        L.append(f"{ind}o{p} = {' + '.join(terms)}")
        base[p] = f"o{p}"
    views: dict[int, str] = {}  # operand -> how element i of this block is written
    if rank == 1 and length <= blk:
        L.append(f"{ind}n = {names.length(length)}")
        for p in opnd:
            s, b = stride[p][-1], base[p]
            at = ("" if b == "0" else f"{b} + ") + ("i" if s == 1 else f"i * {s}")
            views[p] = f"a{p}[{b}]" if s == 0 else f"a{p}[{at}]"
    else:
        L.append(f"{ind}for j0 in range(0, {length}, {blk}):")
        ind += "    "
        L.append(f"{ind}n = min({blk}, {names.length(length)} - j0)")
        for p in opnd:
            s, b = stride[p][-1], base[p]
            if s == 0:
                views[p] = f"a{p}[{b}]"
            else:
                L.append(f"{ind}b{p} = {b} + j0 * {s}")
                views[p] = f"a{p}[b{p} + i]" if s == 1 else f"a{p}[b{p} + i * {s}]"
    for o, op in enumerate(body, start=b0 - o0):  # loads constant along the block leave the element loop
        if op[0] == ops.OP_LOAD and stride[op[3]][-1] == 0:
            L.append(f"{ind}h{o} = {_cast(op[1], views[op[3]], opnd[op[3]][ops.P_DTYPE])}")
    L.append(f"{ind}for i in range(n):")
    inner = ind + "    "
    for o, op in enumerate(body, start=b0 - o0):
        code, f = op[0], op[1]
        if code == ops.OP_LOAD:
            d, p = op[2], op[3]
            if stride[p][-1] == 0:
                value[d] = f"h{o}"
            else:
                L.append(f"{inner}t{o} = {_cast(f, views[p], opnd[p][ops.P_DTYPE])}")
                value[d] = f"t{o}"
        elif code == ops.OP_STORE:
            d, p = op[2], op[3]
            L.append(f"{inner}{views[p]} = {_store_value(opnd[p][ops.P_DTYPE], value[d])}")
        elif code == ops.OP_ACC:
            kind, src, p = op[2], op[3], op[4]
            if stride[p][-1] == 0:
                L.append(f"{inner}buf{p}[i] = {value[src]}")
            else:
                folded = f"S.fold({kind}, {_cast(f, views[p], opnd[p][ops.P_DTYPE])}, {value[src]})"
                L.append(f"{inner}{views[p]} = {_store_value(opnd[p][ops.P_DTYPE], folded)}")
        elif code == ops.OP_LIT:
            L.append(f"{inner}t{o} = {names.const(f, op[3])}")
            value[op[2]] = f"t{o}"
        elif code == ops.OP_CVT:
            L.append(f"{inner}t{o} = {_cast(f, value[op[3]])}")
            value[op[2]] = f"t{o}"
        else:
            name = ops.NAME_OF_OPCODE[code]
            args = [value.get(r, "0") for r in op[3:6]][: ops.ARITY[name]]
            text = _T.sub(ops.FILE_SCALAR[f] + "(", ops.expr(name, f))  # T: the register file's type
            if name == "pow" and args[1].startswith("c"):
                invariant_pow.append((len(L), args[1]))
            L.append(f"{inner}t{o} = {text.format(*args)}")
            value[op[2]] = f"t{o}"
    for op in acc_whole:  # fold each block into its accumulator, as the interpreter does
        f, kind, p = op[1], op[2], op[4]
        cur = _cast(f, f"a{p}[{base[p]}]", opnd[p][ops.P_DTYPE])
        if kind == ops.ACC_SUM:
            # ``zero``, not a literal 0: Numba would compile the seven levels of the sum again for it
            total = f"{cur} + S.pairwise_sum(buf{p}, zero, n)"
            L.append(f"{ind}a{p}[{base[p]}] = {_store_value(opnd[p][ops.P_DTYPE], total)}")
        else:
            L.append(f"{ind}acc{p} = {cur}")  # one name per accumulator: each keeps its file's type
            L.append(f"{ind}for i in range(n):")
            L.append(f"{ind}    acc{p} = S.fold({kind}, acc{p}, buf{p}[i])")
            L.append(f"{ind}a{p}[{base[p]}] = {_store_value(opnd[p][ops.P_DTYPE], f'acc{p}')}")
    if invariant_pow:
        # Two versions of the loop nest: with every constant exponent 0, 1 or 2 (what gradients of
        # squares make), powers are selects and the loop vectorizes; otherwise libm's pow per element.
        nest = L[nest_start:]
        fast = list(nest)
        for line, _ in invariant_pow:
            fast[line - nest_start] = fast[line - nest_start].replace("S.power(", "S.power012(", 1)
        test = " and ".join(f"({c} == 0 or {c} == 1 or {c} == 2)" for c in dict.fromkeys(c for _, c in invariant_pow))
        L[nest_start:] = [f"    if {test}:", *("    " + x for x in fast), "    else:", *("    " + x for x in nest)]
    L.append(f"    return {names.ret}")
    return "\n".join(L) + "\n"
