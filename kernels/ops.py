"""The CPU executor's instruction set: opcodes, their scalar bodies, and the program encoding.

Pure Python (no Numba): the planner (``plan.py``), the interpreter (``interp.py``) and the fused
code generator (``fuse.py``) all read this one table, so an elementwise operation has exactly one
definition of what it computes: its scalar expression in ``EXPR``. The interpreter's per-op loops
and a fused trace's single loop are both generated from it.

Values live in registers while an elementwise group runs: rows of ``BLK`` elements, read either as
``float64`` (file ``F64``) or as ``int64`` (file ``I64``: integers, and booleans in integer code; a
boolean is 0 or 1 in either file). Float32 values are computed in ``F64`` and rounded to float32
after every operation (``round32``): for ``+ - * /`` and ``sqrt`` that is exactly float32
arithmetic (double rounding is innocuous at 53 bits), for other functions it is the float64 result
correctly rounded, within NumPy's own float32 error. One float file keeps the compiled interpreter
small (its cold compile is paid by every fresh install). An expression is written over ``{0}``,
``{1}``, ``{2}`` (the operands) with ``T`` the file's scalar type, ``S`` the helper module
``gradjit.kernels.scalar`` and ``math``.

Encoding of a program (one flat ``int64`` array, so a call unboxes few arguments):

- header ``[MAGIC, n_instr, off_instr, off_ops, off_opnds, off_iters, n_registers, row_length]`` (a
  register row holds ``row_length = min(BLK, longest last axis)`` elements: a program over scalars
  gets one-element registers);
- instructions, ``IW`` ints each: ``EW`` (an elementwise group), ``SCAN`` (argmax/argmin/cumsum/
  cumprod along the last iteration axis), ``GUARD`` (a guard checked where its value is computed),
  ``MATMUL`` (a small matrix product: below ``MATMUL_MAX`` a loop beats a call into BLAS);
- ops of the groups, ``OW`` ints each: ``[opcode, file, dst, a, b, c]``;
- operands, ``PW`` ints each: ``[slot, byte_offset, dtype, span, elem0, 0, strides * MAXR]``: the
  typed array of ``span`` elements starting at ``bases[slot] + byte_offset`` (the lowest address the
  operand touches), element 0 of the iteration at index ``elem0``, one stride per iteration axis;
- iteration spaces, ``1 + MAXR`` ints each: ``[rank, shape * MAXR]``.
"""

from __future__ import annotations

import numpy as np

MAGIC = 0x67A1  # bumped when the encoding changes (the interpreter's source changes with it anyway)
BLK = 1024  # elements per register block
MAXR = 8  # iteration rank after merging axes; lists with more axes than this run on the host

# -- dtypes an operand may have, and register files ---------------------------------------------
DT_F64, DT_F32, DT_I64, DT_I32, DT_BOOL = 0, 1, 2, 3, 4
DTYPE_CODE = {
    np.dtype(np.float64): DT_F64,
    np.dtype(np.float32): DT_F32,
    np.dtype(np.int64): DT_I64,
    np.dtype(np.int32): DT_I32,
    np.dtype(np.bool_): DT_BOOL,
}
F64, I64 = 0, 1
FILE_OF_DTYPE = {DT_F64: F64, DT_F32: F64, DT_I64: I64, DT_I32: I64, DT_BOOL: I64}
FILE_SCALAR = {F64: "np.float64", I64: "np.int64"}
FILE_NAME = {F64: "f64", I64: "i64"}

# -- header, row widths -----------------------------------------------------------------------------
H_N_INSTR, H_OFF_INSTR, H_OFF_OPS, H_OFF_OPNDS, H_OFF_ITERS, H_NREG, H_ROW = 1, 2, 3, 4, 5, 6, 7
HEADER = 8
IW, OW, PW, ITW = 8, 6, 6 + MAXR, 1 + MAXR
P_SLOT, P_BYTE_OFF, P_DTYPE, P_SPAN, P_ELEM0, P_STRIDES = 0, 1, 2, 3, 4, 6

# -- instruction kinds ----------------------------------------------------------------------------
# EW:    [EW, 0, iter, op_start, body_start, op_end, opnd_start, opnd_end]
# SCAN:  [SCAN, scan_op, file, iter, in_opnd, out_opnd, 0, 0]
# GUARD: [GUARD, opnd, guard_kind, guard_index, observed, file, 0, 0]
# MATMUL: [MATMUL, 0, iter, a_opnd, b_opnd, out_opnd, 0, 0]: iteration (batch..., M, N, K), each operand
#         with a stride per axis (0 where it does not vary): out[.., i, j] = sum_k a[.., i, k] * b[.., k, j]
K_EW, K_SCAN, K_GUARD, K_MATMUL = 1, 2, 3, 4
MATMUL_MAX = 32768  # multiply-adds up to which a matmul runs in the interpreter; larger ones call BLAS
SCAN_ARGMAX, SCAN_ARGMIN, SCAN_CUMSUM, SCAN_CUMPROD = 0, 1, 2, 3
G_BOOL, G_INT = 0, 1

# -- data-movement ops inside a group (codes below 16) ------------------------------------------------
# (after the opcode and the register file)
OP_LOAD = 1  # [dst, opnd]: gather a block of the operand into a register (prologue: its one element)
OP_STORE = 2  # [src, opnd]: scatter a register block into the operand, converting to its dtype
OP_LIT = 3  # [dst, k]: fill a register with fconst[k] (F64) or iconst[k] (I64) (in the body: per block)
OP_INIT = 4  # [opnd, k]: fill the whole operand with constant k (an accumulator's identity)
OP_ACC = 5  # [acc_kind, src, opnd]: fold a register block into the operand (a reduction's output)
OP_CVT = 6  # [dst, src]: convert a register to this op's file (int to float rounds, float to int truncates)
ACC_SUM, ACC_PROD, ACC_MAX, ACC_MIN, ACC_ANY, ACC_ALL = 0, 1, 2, 3, 4, 5
ACC_OF_PRIM = {
    "reduce_sum": ACC_SUM,
    "reduce_prod": ACC_PROD,
    "reduce_max": ACC_MAX,
    "reduce_min": ACC_MIN,
    "reduce_any": ACC_ANY,
    "reduce_all": ACC_ALL,
}

# -- computing ops: name -> {file kind: expression}; "f" is F64, "i" is I64 -----------------------------
_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
EXPR: dict[str, dict[str, str]] = {
    "copy": {"f": "{0}", "i": "{0}"},
    "round32": {"f": "np.float64(np.float32({0}))"},
    "nonzero": {"f": "T({0} != 0)", "i": "T({0} != 0)"},
    "neg": {"f": "-{0}", "i": "-{0}"},
    "reciprocal": {"f": "T(1) / {0}"},
    "square": {"f": "{0} * {0}", "i": "{0} * {0}"},
    "sqrt": {"f": "math.sqrt({0})"},
    "cbrt": {"f": "S.cbrt({0})"},
    "exp": {"f": "S.exp({0})"},
    "exp2": {"f": "S.exp2({0})"},
    "expm1": {"f": "S.expm1({0})"},
    "log": {"f": "S.log({0})"},
    "log2": {"f": "S.log2({0})"},
    "log10": {"f": "math.log10({0})"},
    "log1p": {"f": "S.log1p({0})"},
    "sin": {"f": "S.sin({0})"},
    "cos": {"f": "S.cos({0})"},
    "tan": {"f": "math.tan({0})"},
    "arcsin": {"f": "math.asin({0})"},
    "arccos": {"f": "math.acos({0})"},
    "arctan": {"f": "math.atan({0})"},
    "sinh": {"f": "math.sinh({0})"},
    "cosh": {"f": "math.cosh({0})"},
    "tanh": {"f": "S.tanh({0})"},
    "arcsinh": {"f": "math.asinh({0})"},
    "arccosh": {"f": "math.acosh({0})"},
    "arctanh": {"f": "math.atanh({0})"},
    "abs": {"f": "abs({0})", "i": "abs({0})"},
    "sign": {"f": "S.sign({0})", "i": "S.isign({0})"},
    "floor": {"f": "S.floor({0})"},
    "ceil": {"f": "S.ceil({0})"},
    "rint": {"f": "S.rint({0})"},
    "trunc": {"f": "S.trunc({0})"},
    "logical_not": {"f": "T({0} == 0)", "i": "T({0} == 0)"},
    "isnan": {"f": "T({0} != {0})", "i": "T({0} != {0})"},
    "isinf": {"f": "T(math.isinf({0}))", "i": "T({0} != {0})"},
    "isfinite": {"f": "T(math.isfinite({0}))", "i": "T({0} == {0})"},
    "signbit": {"f": "T(S.signbit({0}))"},
    "sinc": {"f": "S.sinc({0})"},
    "add": {"f": "{0} + {1}", "i": "{0} + {1}"},
    "sub": {"f": "{0} - {1}", "i": "{0} - {1}"},
    "mul": {"f": "{0} * {1}", "i": "{0} * {1}"},
    "div": {"f": "{0} / {1}"},
    "pow": {"f": "S.power({0}, {1})"},
    "arctan2": {"f": "math.atan2({0}, {1})"},
    "hypot": {"f": "math.hypot({0}, {1})"},
    "logaddexp": {"f": "S.logaddexp({0}, {1})"},
    "logaddexp2": {"f": "S.logaddexp2({0}, {1})"},
    "maximum": {"f": "S.maximum({0}, {1})", "i": "max({0}, {1})"},
    "minimum": {"f": "S.minimum({0}, {1})", "i": "min({0}, {1})"},
    "fmax": {"f": "S.fmax({0}, {1})", "i": "max({0}, {1})"},
    "fmin": {"f": "S.fmin({0}, {1})", "i": "min({0}, {1})"},
    "mod": {"f": "S.remainder({0}, {1})", "i": "S.iremainder({0}, {1})"},
    "fmod": {"f": "S.fmod({0}, {1})"},
    "copysign": {"f": "math.copysign({0}, {1})"},
    "floor_divide": {"f": "S.floor_divide({0}, {1})", "i": "S.ifloor_divide({0}, {1})"},
    **{k: {"f": f"T({{0}} {op} {{1}})", "i": f"T({{0}} {op} {{1}})"} for k, op in _CMP.items()},
    "logical_and": {"f": "T(({0} != 0) & ({1} != 0))", "i": "T(({0} != 0) & ({1} != 0))"},
    "logical_or": {"f": "T(({0} != 0) | ({1} != 0))", "i": "T(({0} != 0) | ({1} != 0))"},
    "logical_xor": {"f": "T(({0} != 0) != ({1} != 0))", "i": "T(({0} != 0) != ({1} != 0))"},
    "bitwise_and": {"i": "{0} & {1}"},
    "bitwise_or": {"i": "{0} | {1}"},
    "bitwise_xor": {"i": "{0} ^ {1}"},
    "select": {"f": "{1} if {0} != 0 else {2}", "i": "{1} if {0} != 0 else {2}"},
}
ARITY = {name: 1 + max(int(c) for c in e.get("f", e.get("i", "")) if c.isdigit()) for name, e in EXPR.items()}
# Opcodes of computing ops start at 16, in table order (stable: part of the cached source's hash).
OPCODE = {name: 16 + i for i, name in enumerate(EXPR)}
NAME_OF_OPCODE = {code: name for name, code in OPCODE.items()}
# Ops whose result is 0 or 1 whatever their inputs: a boolean output needs no normalisation.
BOOLEAN_RESULT = frozenset(
    ["nonzero", "logical_not", "isnan", "isinf", "isfinite", "signbit", *_CMP]
    + ["logical_and", "logical_or", "logical_xor"]
)


def expr(name: str, file: int) -> str | None:
    """The scalar expression of op ``name`` in register file ``file``, or None if it has none there."""
    return EXPR[name].get("i" if file == I64 else "f")


def switch_source(file: int, func_name: str) -> str:
    """Source of ``func_name(op, regs, d, a, b, c, n)``: one loop per op over a register block.

    The loop for op k computes ``regs[d, i] = expr(regs[a, i], regs[b, i], regs[c, i])`` for
    ``i < n``; operands an op does not use are not read.
    """
    lines = [f"def {func_name}(op, regs, d, a, b, c, n):", f"    T = {FILE_SCALAR[file]}", "    z = regs[d]"]
    lines.append("    # generated from gradjit.kernels.ops.EXPR")
    first = True
    for name, code in OPCODE.items():
        e = expr(name, file)
        if e is None:
            continue
        k = ARITY[name]
        lines.append(f"    {'if' if first else 'elif'} op == {code}:  # {name}")
        first = False
        lines.append("        x = regs[a]")
        if k > 1:
            lines.append("        y = regs[b]")
        if k > 2:
            lines.append("        w = regs[c]")
        lines.append("        for i in range(n):")
        lines.append("            z[i] = " + e.format("x[i]", "y[i]", "w[i]"))
    lines.append("    return 0")
    return "\n".join(lines) + "\n"
