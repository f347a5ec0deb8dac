"""The CPU executor's interpreter: one compiled function runs any encoded program (see ``ops``).

``run(prog, fconst, iconst, bases, start, stop)`` executes instructions ``start..stop-1`` of
``prog`` and returns -1, or the index of the first guard that does not hold. ``bases[slot]`` is the
address of each memory region the program touches (the executor's arena, its inputs, its outputs).

An elementwise group (``EW``) walks its iteration space in blocks of ``BLK`` elements along the last
axis: for each block it runs the group's ops over register rows (loads gather operands, stores
scatter results, ``ACC`` folds values into a reduction's output), so a chain of elementwise
operations reads its inputs once and writes only the values needed outside the group. The per-op
loops are generated from ``ops.EXPR`` (one source of truth with fused code), one function per
register file.

This module is not imported from the package: ``interp_module()`` in ``cpu.py`` writes its text,
with ``ops`` and ``scalar`` (and ``vmath``) hashed into the file name, to the cache directory and
imports it from there, so that Numba's on-disk cache is keyed by everything the machine code
depends on (see ``cache``). Every compiled function takes fixed argument types, so ``run``
compiles exactly once per installation.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from gradjit.kernels import ops
from gradjit.kernels import scalar as S
from gradjit.kernels.ops import (
    ACC_ALL,
    ACC_SUM,
    DT_BOOL,
    DT_F32,
    DT_F64,
    DT_I32,
    DT_I64,
    F64,
    G_BOOL,
    H_N_INSTR,
    H_NREG,
    H_OFF_INSTR,
    H_OFF_ITERS,
    H_OFF_OPNDS,
    H_OFF_OPS,
    H_ROW,
    ITW,
    IW,
    K_EW,
    K_GUARD,
    K_MATMUL,
    K_SCAN,
    OP_ACC,
    OP_CVT,
    OP_INIT,
    OP_LIT,
    OP_LOAD,
    OP_STORE,
    OW,
    P_BYTE_OFF,
    P_DTYPE,
    P_ELEM0,
    P_SLOT,
    P_SPAN,
    P_STRIDES,
    PW,
    SCAN_ARGMAX,
    SCAN_ARGMIN,
    SCAN_CUMSUM,
)
from gradjit.kernels.scalar import as_pointer
from numba import types
from numba.extending import overload

_nj = numba.njit(error_model="numpy", nogil=True)
_entry = numba.njit(cache=True, error_model="numpy", nogil=True)

# -- the generated per-op loops, one function per register file ---------------------------------
_NS = {"math": math, "np": np, "S": S}
for _file in (F64, ops.I64):
    exec(ops.switch_source(_file, f"apply_{ops.FILE_NAME[_file]}"), _NS)


def apply_op(op, regs, d, a, b, c, n):
    """``regs[d, :n] = op(regs[a, :n], regs[b, :n], regs[c, :n])`` (compiled code only)."""
    raise NotImplementedError


@overload(apply_op)
def _apply_op(op, regs, d, a, b, c, n):
    return _NS["apply_" + {types.float64: "f64", types.int64: "i64"}[regs.dtype]]


# -- typed views of memory ------------------------------------------------------------------------
# Loops index views that start at 0 (``src[start:...]``): Numba checks ``a[start + i]`` for a
# negative index at every element, which keeps LLVM from vectorizing the loop.
@_nj
def _gather(z, src, start, stride, n):
    if stride == 1:
        s = src[start : start + n]
        for i in range(n):
            z[i] = s[i]
    elif stride == 0:
        v = src[start]
        for i in range(n):
            z[i] = v
    else:
        for i in range(n):
            z[i] = src[start + i * stride]


@_nj
def _scatter(dst, z, start, stride, n):
    if stride == 1:
        d = dst[start : start + n]
        for i in range(n):
            d[i] = z[i]
    else:
        for i in range(n):
            dst[start + i * stride] = z[i]


@_nj
def _scatter_bool(dst, z, start, stride, n):
    if stride == 1:
        d = dst[start : start + n]
        for i in range(n):
            d[i] = np.uint8(z[i] != 0)
    else:
        for i in range(n):
            dst[start + i * stride] = np.uint8(z[i] != 0)


@_nj
def _opnd(prog, p):
    return prog[H_OFF_OPNDS] + p * PW


@_nj
def _load(z, prog, p, bases, start, stride, n):
    """Gather ``n`` elements of operand ``p`` (from element ``start``, step ``stride``) into ``z``."""
    q = _opnd(prog, p)
    addr = bases[prog[q + P_SLOT]] + prog[q + P_BYTE_OFF]
    span = prog[q + P_SPAN]
    dt = prog[q + P_DTYPE]
    if dt == DT_F64:
        _gather(z, numba.carray(as_pointer(addr, np.float64), (span,)), start, stride, n)
    elif dt == DT_F32:
        _gather(z, numba.carray(as_pointer(addr, np.float32), (span,)), start, stride, n)
    elif dt == DT_I64:
        _gather(z, numba.carray(as_pointer(addr, np.int64), (span,)), start, stride, n)
    elif dt == DT_I32:
        _gather(z, numba.carray(as_pointer(addr, np.int32), (span,)), start, stride, n)
    else:
        _gather(z, numba.carray(as_pointer(addr, np.uint8), (span,)), start, stride, n)


@_nj
def _store(z, prog, p, bases, start, stride, n):
    """Scatter ``z[:n]`` into operand ``p``, converting to its dtype (booleans: nonzero)."""
    q = _opnd(prog, p)
    addr = bases[prog[q + P_SLOT]] + prog[q + P_BYTE_OFF]
    span = prog[q + P_SPAN]
    dt = prog[q + P_DTYPE]
    if dt == DT_F64:
        _scatter(numba.carray(as_pointer(addr, np.float64), (span,)), z, start, stride, n)
    elif dt == DT_F32:
        _scatter(numba.carray(as_pointer(addr, np.float32), (span,)), z, start, stride, n)
    elif dt == DT_I64:
        _scatter(numba.carray(as_pointer(addr, np.int64), (span,)), z, start, stride, n)
    elif dt == DT_I32:
        _scatter(numba.carray(as_pointer(addr, np.int32), (span,)), z, start, stride, n)
    else:
        _scatter_bool(numba.carray(as_pointer(addr, np.uint8), (span,)), z, start, stride, n)


# -- reductions -------------------------------------------------------------------------------------
@_nj
def _acc_into(kind, dst, z, start, stride, n, tmp, is_bool):
    """Fold ``z[:n]`` into ``dst`` (``stride == 0``: all into one element)."""
    if stride == 0:
        tmp[0] = dst[start]
        acc = tmp[0]
        if kind == ACC_SUM:
            acc = acc + S.pairwise_sum(z, 0, n)
        else:
            for i in range(n):
                acc = S.fold(kind, acc, z[i])
        tmp[0] = acc
        if is_bool:
            dst[start] = tmp[0] != 0
        else:
            dst[start] = tmp[0]
    else:
        for i in range(n):
            tmp[0] = dst[start + i * stride]
            tmp[0] = S.fold(kind, tmp[0], z[i])
            if is_bool:
                dst[start + i * stride] = tmp[0] != 0
            else:
                dst[start + i * stride] = tmp[0]


@_nj
def _acc(kind, z, prog, p, bases, start, stride, n, tmp):
    q = _opnd(prog, p)
    addr = bases[prog[q + P_SLOT]] + prog[q + P_BYTE_OFF]
    span = prog[q + P_SPAN]
    dt = prog[q + P_DTYPE]
    if dt == DT_BOOL:
        _acc_into(kind, numba.carray(as_pointer(addr, np.uint8), (span,)), z, start, stride, n, tmp, True)
    elif dt == DT_F32:
        _acc_into(kind, numba.carray(as_pointer(addr, np.float32), (span,)), z, start, stride, n, tmp, False)
    else:  # the register file's own dtype (the planner guarantees it)
        _acc_into(kind, numba.carray(as_pointer(addr, z.dtype), (span,)), z, start, stride, n, tmp, False)


# -- an elementwise group ---------------------------------------------------------------------------
@_nj
def _fill(z, v):
    for i in range(z.shape[0]):
        z[i] = v


@_nj
def _body_op(prog, o, rf, ri, fconst, iconst, bases, obase, j0, n, rank, tf, ti):
    q = prog[H_OFF_OPS] + o * OW
    op, f = prog[q], prog[q + 1]
    if op == OP_LOAD or op == OP_STORE or op == OP_ACC:
        p = prog[q + 3] if op != OP_ACC else prog[q + 4]
        s = prog[_opnd(prog, p) + P_STRIDES + rank - 1]
        start = obase[p] + j0 * s
        if op == OP_LOAD:
            if f == F64:
                _load(rf[prog[q + 2]], prog, p, bases, start, s, n)
            else:
                _load(ri[prog[q + 2]], prog, p, bases, start, s, n)
        elif op == OP_STORE:
            if f == F64:
                _store(rf[prog[q + 2]], prog, p, bases, start, s, n)
            else:
                _store(ri[prog[q + 2]], prog, p, bases, start, s, n)
        elif f == F64:
            _acc(prog[q + 2], rf[prog[q + 3]], prog, p, bases, start, s, n, tf)
        else:
            _acc(prog[q + 2], ri[prog[q + 3]], prog, p, bases, start, s, n, ti)
    elif op == OP_LIT:  # a literal without a register of its own for the whole group
        if f == F64:
            _fill(rf[prog[q + 2], :n], fconst[prog[q + 3]])
        else:
            _fill(ri[prog[q + 2], :n], iconst[prog[q + 3]])
    elif op == OP_CVT:
        d, src = prog[q + 2], prog[q + 3]
        if f == F64:
            for i in range(n):
                rf[d, i] = ri[src, i]
        else:
            for i in range(n):
                ri[d, i] = rf[src, i]
    elif f == F64:
        apply_op(op, rf, prog[q + 2], prog[q + 3], prog[q + 4], prog[q + 5], n)
    else:
        apply_op(op, ri, prog[q + 2], prog[q + 3], prog[q + 4], prog[q + 5], n)


@_nj
def _prologue_op(prog, o, rf, ri, fconst, iconst, bases, tf, ti):
    q = prog[H_OFF_OPS] + o * OW
    op, f = prog[q], prog[q + 1]
    if op == OP_LIT:
        if f == F64:
            _fill(rf[prog[q + 2]], fconst[prog[q + 3]])
        else:
            _fill(ri[prog[q + 2]], iconst[prog[q + 3]])
    elif op == OP_LOAD:  # an operand constant over the iteration: its element, in every lane
        p = prog[q + 3]
        if f == F64:
            _load(rf[prog[q + 2]], prog, p, bases, prog[_opnd(prog, p) + P_ELEM0], 0, rf.shape[1])
        else:
            _load(ri[prog[q + 2]], prog, p, bases, prog[_opnd(prog, p) + P_ELEM0], 0, rf.shape[1])
    elif op == OP_INIT:  # an accumulator: the identity in every element of the output
        p = prog[q + 2]
        span = prog[_opnd(prog, p) + P_SPAN]
        if f == F64:
            tf[0] = fconst[prog[q + 3]]
            for j in range(span):
                _store(tf, prog, p, bases, j, 0, 1)
        else:
            ti[0] = iconst[prog[q + 3]]
            for j in range(span):
                _store(ti, prog, p, bases, j, 0, 1)


@_nj
def _group(prog, k, rf, ri, fconst, iconst, bases, obase, idx, tf, ti):
    ins = prog[H_OFF_INSTR] + k * IW
    itq = prog[H_OFF_ITERS] + prog[ins + 2] * ITW
    o0, b0, o1, p0, p1 = prog[ins + 3], prog[ins + 4], prog[ins + 5], prog[ins + 6], prog[ins + 7]
    rank = prog[itq]
    length = prog[itq + rank]
    n_outer = 1
    for d in range(rank - 1):
        n_outer *= prog[itq + 1 + d]
        idx[d] = 0
    for o in range(o0, b0):
        _prologue_op(prog, o, rf, ri, fconst, iconst, bases, tf, ti)
    for _ in range(n_outer):
        for p in range(p0, p1):
            q = _opnd(prog, p)
            off = prog[q + P_ELEM0]
            for d in range(rank - 1):
                off += idx[d] * prog[q + P_STRIDES + d]
            obase[p] = off
        blk = rf.shape[1]
        for j0 in range(0, length, blk):
            n = min(blk, length - j0)
            for o in range(b0, o1):
                _body_op(prog, o, rf, ri, fconst, iconst, bases, obase, j0, n, rank, tf, ti)
        d = rank - 2
        while d >= 0:
            idx[d] += 1
            if idx[d] < prog[itq + 1 + d]:
                break
            idx[d] = 0
            d -= 1


# -- scans along the last iteration axis: argmax, argmin, cumsum, cumprod ---------------------------
@_nj
def _scan(prog, k, regs, bases, idx):
    ins = prog[H_OFF_INSTR] + k * IW
    sop, itq, round32 = prog[ins + 1], prog[H_OFF_ITERS] + prog[ins + 3] * ITW, prog[ins + 6]
    pin, pout = prog[ins + 4], prog[ins + 5]
    qin, qout = _opnd(prog, pin), _opnd(prog, pout)
    rank = prog[itq]
    length = prog[itq + rank]
    sin, sout = prog[qin + P_STRIDES + rank - 1], prog[qout + P_STRIDES + rank - 1]
    n_outer = 1
    for d in range(rank - 1):
        n_outer *= prog[itq + 1 + d]
        idx[d] = 0
    x, y = regs[0], regs[1]
    out_i = numba.carray(
        as_pointer(bases[prog[qout + P_SLOT]] + prog[qout + P_BYTE_OFF], np.int64), (prog[qout + P_SPAN],)
    )
    for _ in range(n_outer):
        bin_, bout = prog[qin + P_ELEM0], prog[qout + P_ELEM0]
        for d in range(rank - 1):
            bin_ += idx[d] * prog[qin + P_STRIDES + d]
            bout += idx[d] * prog[qout + P_STRIDES + d]
        best = x[0]
        carry = x[0]
        where = 0
        done = False
        blk = regs.shape[1]
        for j0 in range(0, length, blk):
            n = min(blk, length - j0)
            _load(x, prog, pin, bases, bin_ + j0 * sin, sin, n)
            if sop == SCAN_ARGMAX or sop == SCAN_ARGMIN:
                if j0 == 0:
                    best = x[0]
                    done = best != best
                for i in range(n):
                    if done:
                        break
                    v = x[i]
                    if v != v:
                        best, where, done = v, j0 + i, True
                    elif (v > best) if sop == SCAN_ARGMAX else (v < best):
                        best, where = v, j0 + i
            else:
                for i in range(n):
                    if j0 + i == 0:
                        carry = x[0]
                    elif sop == SCAN_CUMSUM:
                        carry = carry + x[i]
                    else:
                        carry = carry * x[i]
                    if round32:  # a float32 running value, rounded at each step as NumPy's is
                        carry = S.round32(carry)
                    y[i] = carry
                _store(y, prog, pout, bases, bout + j0 * sout, sout, n)
        if sop == SCAN_ARGMAX or sop == SCAN_ARGMIN:
            out_i[bout] = where
        d = rank - 2
        while d >= 0:
            idx[d] += 1
            if idx[d] < prog[itq + 1 + d]:
                break
            idx[d] = 0
            d -= 1


@_nj
def _mm(a, b, o, prog, itq, qa, qb, qo, idx):
    rank = prog[itq]
    m, n, kk = prog[itq + rank - 2], prog[itq + rank - 1], prog[itq + rank]
    nb = rank - 3
    sai, sak = prog[qa + P_STRIDES + nb], prog[qa + P_STRIDES + nb + 2]
    sbj, sbk = prog[qb + P_STRIDES + nb + 1], prog[qb + P_STRIDES + nb + 2]
    soi, soj = prog[qo + P_STRIDES + nb], prog[qo + P_STRIDES + nb + 1]
    n_batch = 1
    for d in range(nb):
        n_batch *= prog[itq + 1 + d]
        idx[d] = 0
    for _ in range(n_batch):
        ba, bb, bo = prog[qa + P_ELEM0], prog[qb + P_ELEM0], prog[qo + P_ELEM0]
        for d in range(nb):
            ba += idx[d] * prog[qa + P_STRIDES + d]
            bb += idx[d] * prog[qb + P_STRIDES + d]
            bo += idx[d] * prog[qo + P_STRIDES + d]
        for i in range(m):
            for j in range(n):
                pa, pb = ba + i * sai, bb + j * sbj
                if sak == 1 and sbk == 1:  # both rows contiguous: 8 lanes, as compiled templates do
                    acc = S.dot_lanes(
                        as_pointer(a.ctypes.data + pa * a.itemsize, a.dtype),
                        as_pointer(b.ctypes.data + pb * b.itemsize, b.dtype),
                        kk,
                    )
                else:
                    acc = 0.0
                    for t in range(kk):
                        acc += np.float64(a[pa + t * sak]) * np.float64(b[pb + t * sbk])
                o[bo + i * soi + j * soj] = acc
        d = nb - 1
        while d >= 0:
            idx[d] += 1
            if idx[d] < prog[itq + 1 + d]:
                break
            idx[d] = 0
            d -= 1


@_nj
def _matmul(prog, k, bases, idx):
    """A small matrix product (see ``ops.K_MATMUL``), accumulated in float64."""
    ins = prog[H_OFF_INSTR] + k * IW
    itq = prog[H_OFF_ITERS] + prog[ins + 2] * ITW
    qa, qb, qo = _opnd(prog, prog[ins + 3]), _opnd(prog, prog[ins + 4]), _opnd(prog, prog[ins + 5])
    aa = bases[prog[qa + P_SLOT]] + prog[qa + P_BYTE_OFF]
    ab = bases[prog[qb + P_SLOT]] + prog[qb + P_BYTE_OFF]
    ao = bases[prog[qo + P_SLOT]] + prog[qo + P_BYTE_OFF]
    na, nb_, no = prog[qa + P_SPAN], prog[qb + P_SPAN], prog[qo + P_SPAN]
    if prog[qa + P_DTYPE] == DT_F64:
        a = numba.carray(as_pointer(aa, np.float64), (na,))
        b = numba.carray(as_pointer(ab, np.float64), (nb_,))
        o = numba.carray(as_pointer(ao, np.float64), (no,))
        _mm(a, b, o, prog, itq, qa, qb, qo, idx)
    else:
        a32 = numba.carray(as_pointer(aa, np.float32), (na,))
        b32 = numba.carray(as_pointer(ab, np.float32), (nb_,))
        o32 = numba.carray(as_pointer(ao, np.float32), (no,))
        _mm(a32, b32, o32, prog, itq, qa, qb, qo, idx)


@_nj
def _guard(prog, k, regs, bases):
    """True if guard instruction ``k`` holds: the operand's (only) element against the observed value."""
    ins = prog[H_OFF_INSTR] + k * IW
    p = prog[ins + 1]
    z = regs[0]
    _load(z, prog, p, bases, prog[_opnd(prog, p) + P_ELEM0], 0, 1)
    if prog[ins + 2] == G_BOOL:
        return (z[0] != 0) == (prog[ins + 4] != 0)
    return z[0] == prog[ins + 4]


# -- the entry point ----------------------------------------------------------------------------------
@_nj
def _unowned(a):
    """``a`` as a view without a reference count: Numba increments and decrements the count of every
    array argument at each call of a function it does not inline (an atomic operation, about 10 ns
    each), which dominated the cost of an op on small arrays. The caller keeps ``a`` alive."""
    return numba.carray(as_pointer(a.ctypes.data, a.dtype), a.shape)


@_nj
def _execute(prog, fconst, iconst, bases, start, stop, rf, ri, obase, idx, tf, ti):
    for k in range(start, stop):
        ins = prog[H_OFF_INSTR] + k * IW
        kind = prog[ins]
        if kind == K_EW:
            _group(prog, k, rf, ri, fconst, iconst, bases, obase, idx, tf, ti)
        elif kind == K_SCAN:
            if prog[ins + 2] == F64:
                _scan(prog, k, rf, bases, idx)
            else:
                _scan(prog, k, ri, bases, idx)
        elif kind == K_MATMUL:
            _matmul(prog, k, bases, idx)
        elif kind == K_GUARD:
            ok = _guard(prog, k, rf, bases) if prog[ins + 5] == F64 else _guard(prog, k, ri, bases)
            if not ok:
                return prog[ins + 3]
    return -1


@_entry
def run(prog, fconst, iconst, bases, start, stop):
    """Run instructions ``start..stop-1``; -1 if all guards held, else the failing guard's index."""
    registers = np.empty((max(prog[H_NREG], 2), prog[H_ROW]), np.float64)
    scratch = np.zeros(max((prog.shape[0] - prog[H_OFF_OPNDS]) // PW, 1) + ops.MAXR + 2, np.int64)
    rf = _unowned(registers)
    ri = numba.carray(as_pointer(registers.ctypes.data, np.int64), registers.shape)  # the same memory as int64
    obase = _unowned(scratch)
    idx = obase[obase.shape[0] - ops.MAXR - 2 : obase.shape[0] - 2]
    ti = obase[obase.shape[0] - 1 :]
    tf = numba.carray(as_pointer(scratch.ctypes.data + 8 * (scratch.shape[0] - 2), np.float64), (1,))
    u = _unowned
    status = _execute(u(prog), u(fconst), u(iconst), u(bases), start, stop, rf, ri, obase, idx, tf, ti)
    # Numba releases an array after its last use: using the owners here keeps the memory the views
    # above point into alive until the program has run.
    return status + 0 * (registers.shape[0] + scratch.shape[0])


RUN_SIGNATURE = "int64(int64[::1], float64[::1], int64[::1], int64[::1], int64, int64)"


def warm(module: object = None) -> None:
    """Compile ``run`` for its one signature, or load it from Numba's disk cache."""
    run.compile(RUN_SIGNATURE)


assert H_N_INSTR == 1 and ACC_ALL == 5 and DT_I32 == 3 and DT_I64 == 2 and SCAN_CUMSUM == 2  # encoding check
