"""Source text of the CUDA kernels, generated per structure (rank, dtypes, operation).

Every function here returns the Python source of one ``@cuda.jit`` kernel named ``kernel``; the
backend (``cuda.py``) writes it to a module of the disk cache (``kernels/cache.py``) and compiles it
once per process (and, on a GPU, once per machine: ``cache=True``). Sources are plain text so the
same generator serves the GPU and Numba's simulator, and a kernel's structure (rank, index pattern,
operation, dtypes, block shape) is a compile-time constant, as CUDA wants.

Conventions shared by all kernels:

- Arrays are 1-D device buffers with an element ``offset`` and element ``strides`` per dimension
  (``gradjit.placement.DeviceArray``); a kernel unravels a flat index over a shape with ``%`` and
  ``//`` (the first dimension needs no ``%``).
- ``T`` names a compute type: ``np.float64``, ``np.float32`` or ``np.int64``; values are converted to
  it when read and to the output's dtype when written (booleans are written as ``v != 0``).
- Grid-stride loops (``i += cuda.gridsize(1)``): any grid size is correct, the backend picks one.
- Reductions are trees in shared memory (one per block; a second launch combines the blocks' partial
  results when a reduction is split over several blocks), never atomics on one address. Atomics are
  used only where different threads may write the same element by design: scatter-add
  (``index_add``, the gradient of indexing) and "last write wins" for ``index_set``.

Invariant: a generated source depends only on the arguments of its generator (they form the key
under which the backend caches the compiled kernel).
"""

from __future__ import annotations

HEADER = (
    "import numpy as np\n"
    "from numba import cuda\n"
    "from gradjit.kernels.cuda_scalar import S_F64, S_F32, S_I64, MATH_F64, MATH_F32, MATH_I64\n"
)


def jit_line(cache: bool) -> str:
    return f"@cuda.jit(cache={cache})\n"


def unravel(index: str, prefix: str, rank: int, ind: str) -> list[str]:
    """Lines setting ``{prefix}0..{prefix}{rank-1}`` to the coordinates of flat ``index`` over
    ``shape_{prefix}{d}`` (C order)."""
    if rank == 0:
        return []
    if rank == 1:
        return [f"{ind}{prefix}0 = {index}"]
    lines = [f"{ind}_r = {index}"]
    for d in range(rank - 1, 0, -1):
        lines.append(f"{ind}{prefix}{d} = _r % n{prefix}{d}")
        lines.append(f"{ind}_r = _r // n{prefix}{d}")
    lines.append(f"{ind}{prefix}0 = _r")
    return lines


def offset(base: str, coords: str, strides: str, rank: int) -> str:
    """``base + c0 * s0 + ...``."""
    return " + ".join([base] + [f"{coords}{d} * {strides}{d}" for d in range(rank)])


def shape_args(prefix: str, rank: int) -> list[str]:
    return [f"n{prefix}{d}" for d in range(rank)]


# ---------------------------------------------------------------------------------------------
# Elementwise: a program of scalar expressions over broadcast operands, written through strides.
# ---------------------------------------------------------------------------------------------
def elementwise(
    n_in: int,
    scalar_in: tuple[bool, ...],
    body: list[str],
    n_out: int,
    rank: int,
    cache: bool,
    reductions: tuple = (),
    nthreads: int = 0,
) -> str:
    """``body`` reads ``x0..`` (inputs) and assigns ``y0..`` (outputs, already converted for storing).

    ``reductions`` = ((kind, T, identity, value name), ...): each is also folded over the whole index
    space: a running value per thread, a tree over the block (``nthreads`` threads) in shared memory,
    and one partial result per block in ``r0, r1, ...`` (the backend combines the blocks' partials)."""
    args = ["n"] + shape_args("c", rank)
    loads, stores = [], []
    for j in range(n_in):
        if scalar_in[j]:
            args.append(f"x{j}")
        else:
            args += [f"a{j}", f"o{j}"] + [f"s{j}_{d}" for d in range(rank)]
            loads.append(f"        x{j} = a{j}[{offset(f'o{j}', 'c', f's{j}_', rank)}]")
    for k in range(n_out):
        args += [f"z{k}", f"p{k}"] + [f"t{k}_{d}" for d in range(rank)]
        stores.append(f"        z{k}[{offset(f'p{k}', 'c', f't{k}_', rank)}] = y{k}")
    args += [f"r{q}" for q in range(len(reductions))]
    lines = [jit_line(cache) + f"def kernel({', '.join(args)}):"]
    lines += ["    i = cuda.grid(1)", "    step = cuda.gridsize(1)"]
    lines += [f"    acc{q} = {ident}" for q, (_, _, ident, _) in enumerate(reductions)]
    lines.append("    while i < n:")
    lines += unravel("i", "c", rank, "        ")
    lines += loads + ["        " + b for b in body] + stores
    for q, (kind, t, _, value) in enumerate(reductions):
        lines.append(f"        w{q} = {t}({value})")
        lines += combine_lines(kind, f"acc{q}", f"w{q}", "        ")
    lines.append("        i += step")
    for q, (kind, t, _, _) in enumerate(reductions):
        lines += [
            f"    sm{q} = cuda.shared.array({nthreads}, {t})",
            "    tx = cuda.threadIdx.x",
            f"    sm{q}[tx] = acc{q}",
            "    cuda.syncthreads()",
            f"    h = {nthreads // 2}",
            "    while h > 0:",
            "        if tx < h:",
            f"            pa = sm{q}[tx]",
            f"            pb = sm{q}[tx + h]",
        ]
        lines += combine_lines(kind, "pa", "pb", "            ")
        lines += [f"            sm{q}[tx] = pa", "        cuda.syncthreads()", "        h //= 2"]
        lines += ["    if cuda.threadIdx.x == 0:", f"        r{q}[cuda.blockIdx.x] = sm{q}[0]"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Reductions: out[m] = combine over k of x[kept(m) + reduced(k)], a block of BX x BY threads per
# BX outputs, BY threads along the reduction, a tree over BY in shared memory.
# ---------------------------------------------------------------------------------------------
def combine_lines(kind: str, a: str, b: str, ind: str) -> list[str]:
    """Lines setting ``a = a (op) b``; ``a`` and ``b`` are names."""
    if kind == "sum":
        return [f"{ind}{a} = {a} + {b}"]
    if kind == "prod":
        return [f"{ind}{a} = {a} * {b}"]
    if kind in ("max", "any"):  # NaN wins (``a != a``), as in NumPy's max
        return [f"{ind}if not ({a} >= {b} or {a} != {a}):", f"{ind}    {a} = {b}"]
    if kind in ("min", "all"):
        return [f"{ind}if not ({a} <= {b} or {a} != {a}):", f"{ind}    {a} = {b}"]
    raise ValueError(kind)


def reduction(
    kind: str, t: str, ident: str, load: str, store: str, rk: int, rr: int, bx: int, by: int, cache: bool
) -> str:
    """``load`` converts ``v`` (an element) to ``T``; ``store`` converts ``w`` for the output buffer."""
    nt = bx * by
    args = ["M", "K", "G", "a", "o"] + shape_args("k", rk) + [f"sk{d}" for d in range(rk)]
    args += shape_args("r", rr) + [f"sr{d}" for d in range(rr)] + ["z"]
    lines = [jit_line(cache) + f"def kernel({', '.join(args)}):"]
    lines += [
        f"    sm = cuda.shared.array({nt}, {t})",
        "    tx = cuda.threadIdx.x",
        "    ty = cuda.threadIdx.y",
        "    g = cuda.blockIdx.y",
        f"    m = cuda.blockIdx.x * {bx} + tx",
        f"    acc = {ident}",
        "    if m < M:",
    ]
    lines += unravel("m", "k", rk, "        ")
    lines.append(f"        base = {offset('o', 'k', 'sk', rk)}")
    lines += [f"        k = g * {by} + ty", "        while k < K:"]
    lines += unravel("k", "r", rr, "            ")
    lines.append(f"            v = a[{offset('base', 'r', 'sr', rr)}]")
    lines.append(f"            u = {load}")
    lines += combine_lines(kind, "acc", "u", "            ")
    lines.append(f"            k += {by} * G")
    lines += [f"    sm[ty * {bx} + tx] = acc", "    cuda.syncthreads()", f"    s = {by // 2}", "    while s > 0:"]
    lines += ["        if ty < s:", f"            p = sm[ty * {bx} + tx]", f"            q = sm[(ty + s) * {bx} + tx]"]
    lines += combine_lines(kind, "p", "q", "            ")
    lines += [f"            sm[ty * {bx} + tx] = p", "        cuda.syncthreads()", "        s //= 2"]
    lines += ["    if ty == 0 and m < M:", "        w = sm[tx]", f"        z[m * G + g] = {store}"]
    return "\n".join(lines) + "\n"


def arg_reduction(kind: str, t: str, rk: int, rr: int, bx: int, by: int, cache: bool) -> str:
    """argmax/argmin: (value, index) pairs; ties go to the smaller index, the first NaN wins."""
    nt = bx * by
    cmp = ">" if kind == "argmax" else "<"
    better = f"(bv != bv and not (av != av and ai < bi)) or (av == av and bv {cmp} av) or (bv == av and bi < ai)"
    args = ["M", "K", "a", "o"] + shape_args("k", rk) + [f"sk{d}" for d in range(rk)]
    args += shape_args("r", rr) + [f"sr{d}" for d in range(rr)] + ["z"]
    lines = [jit_line(cache) + f"def kernel({', '.join(args)}):"]
    lines += [
        f"    sv = cuda.shared.array({nt}, {t})",
        f"    si = cuda.shared.array({nt}, np.int64)",
        "    tx = cuda.threadIdx.x",
        "    ty = cuda.threadIdx.y",
        f"    m = cuda.blockIdx.x * {bx} + tx",
        f"    av = {t}(0)",
        "    ai = -1",
        "    if m < M:",
    ]
    lines += unravel("m", "k", rk, "        ")
    lines.append(f"        base = {offset('o', 'k', 'sk', rk)}")
    lines += ["        bi = ty", "        while bi < K:"]
    lines += unravel("bi", "r", rr, "            ")
    lines.append(f"            bv = {t}(a[{offset('base', 'r', 'sr', rr)}])")
    lines += [f"            if ai < 0 or {better}:", "                av = bv", "                ai = bi"]
    lines.append(f"            bi += {by}")
    lines += [f"    sv[ty * {bx} + tx] = av", f"    si[ty * {bx} + tx] = ai", "    cuda.syncthreads()"]
    lines += [f"    s = {by // 2}", "    while s > 0:", "        if ty < s:"]
    lines += [
        f"            av = sv[ty * {bx} + tx]",
        f"            ai = si[ty * {bx} + tx]",
        f"            bv = sv[(ty + s) * {bx} + tx]",
        f"            bi = si[(ty + s) * {bx} + tx]",
        f"            if bi >= 0 and (ai < 0 or {better}):",
        f"                sv[ty * {bx} + tx] = bv",
        f"                si[ty * {bx} + tx] = bi",
        "        cuda.syncthreads()",
        "        s //= 2",
        "    if ty == 0 and m < M:",
        "        z[m] = si[tx]",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Scans along the middle axis of a contiguous [A, K, B] array, in chunks of L: each thread scans
# one chunk of one line; the chunks' totals are scanned (recursively), then added back.
# ---------------------------------------------------------------------------------------------
def scan_chunks(kind: str, t: str, ident: str, cache: bool) -> str:
    op = "+" if kind == "sum" else "*"
    return (
        jit_line(cache)
        + "def kernel(A, K, B, L, C, a, o, z, tot):\n"
        + "    t = cuda.grid(1)\n"
        + "    step = cuda.gridsize(1)\n"
        + "    while t < A * C * B:\n"
        + "        b = t % B\n"
        + "        r = t // B\n"
        + "        c = r % C\n"
        + "        aa = r // C\n"
        + f"        acc = {ident}\n"
        + "        k = c * L\n"
        + "        end = min(k + L, K)\n"
        + "        while k < end:\n"
        + "            idx = (aa * K + k) * B + b\n"
        + f"            acc = acc {op} {t}(a[o + idx])\n"
        + "            z[idx] = acc\n"
        + "            k += 1\n"
        + "        tot[t] = acc\n"
        + "        t += step\n"
    )


def scan_add_back(kind: str, cache: bool) -> str:
    op = "+" if kind == "sum" else "*"
    return (
        jit_line(cache)
        + "def kernel(A, K, B, L, C, z, ts):\n"
        + "    t = cuda.grid(1)\n"
        + "    step = cuda.gridsize(1)\n"
        + "    while t < A * K * B:\n"
        + "        b = t % B\n"
        + "        r = t // B\n"
        + "        k = r % K\n"
        + "        aa = r // K\n"
        + "        c = k // L\n"
        + "        if c > 0:\n"
        + f"            z[t] = ts[(aa * C + c - 1) * B + b] {op} z[t]\n"
        + "        t += step\n"
    )


# ---------------------------------------------------------------------------------------------
# Matrix product: a block computes a BM x BN tile of one batch entry, each thread a TM x TN
# sub-tile held in registers; A and B tiles of depth BK are staged in shared memory.
# ---------------------------------------------------------------------------------------------
def matmul(t: str, rb: int, bm: int, bn: int, bk: int, tm: int, tn: int, store: str, cache: bool) -> str:
    nt = (bm // tm) * (bn // tn)
    cols = bn // tn
    args = ["NB", "M", "N", "K", "a", "ao", "asm", "ask", "b", "bo", "bsk", "bsn", "z"]
    args += shape_args("q", rb) + [f"qa{d}" for d in range(rb)] + [f"qb{d}" for d in range(rb)]
    lines = [jit_line(cache) + f"def kernel({', '.join(args)}):"]
    lines += [
        f"    As = cuda.shared.array(({bk}, {bm}), {t})",
        f"    Bs = cuda.shared.array(({bk}, {bn}), {t})",
        f"    acc = cuda.local.array(({tm}, {tn}), {t})",
        f"    ra = cuda.local.array({tm}, {t})",
        f"    rb = cuda.local.array({tn}, {t})",
        "    tx = cuda.threadIdx.x",
        f"    trow = tx // {cols}",
        f"    tcol = tx % {cols}",
        f"    row0 = cuda.blockIdx.y * {bm}",
        f"    col0 = cuda.blockIdx.x * {bn}",
        "    bz = cuda.blockIdx.z",
        "    while bz < NB:",
    ]
    lines += unravel("bz", "q", rb, "        ")
    lines.append(f"        aoff = {offset('ao', 'q', 'qa', rb)}")
    lines.append(f"        boff = {offset('bo', 'q', 'qb', rb)}")
    lines += [
        f"        for i in range({tm}):",
        f"            for j in range({tn}):",
        f"                acc[i, j] = {t}(0)",
        "        k0 = 0",
        "        while k0 < K:",
        "            e = tx",
        f"            while e < {bm * bk}:",
        f"                r = e // {bk}",
        f"                c = e % {bk}",
        "                gr = row0 + r",
        "                gk = k0 + c",
        "                if gr < M and gk < K:",
        f"                    As[c, r] = {t}(a[aoff + gr * asm + gk * ask])",
        "                else:",
        f"                    As[c, r] = {t}(0)",
        f"                e += {nt}",
        "            e = tx",
        f"            while e < {bk * bn}:",
        f"                r = e // {bn}",
        f"                c = e % {bn}",
        "                gk = k0 + r",
        "                gc = col0 + c",
        "                if gk < K and gc < N:",
        f"                    Bs[r, c] = {t}(b[boff + gk * bsk + gc * bsn])",
        "                else:",
        f"                    Bs[r, c] = {t}(0)",
        f"                e += {nt}",
        "            cuda.syncthreads()",
        f"            for kk in range({bk}):",
        f"                for i in range({tm}):",
        f"                    ra[i] = As[kk, trow * {tm} + i]",
        f"                for j in range({tn}):",
        f"                    rb[j] = Bs[kk, tcol * {tn} + j]",
        f"                for i in range({tm}):",
        f"                    for j in range({tn}):",
        "                        acc[i, j] += ra[i] * rb[j]",
        "            cuda.syncthreads()",
        f"            k0 += {bk}",
        f"        for i in range({tm}):",
        f"            gr = row0 + trow * {tm} + i",
        "            if gr < M:",
        f"                for j in range({tn}):",
        f"                    gc = col0 + tcol * {tn} + j",
        "                    if gc < N:",
        "                        w = acc[i, j]",
        f"                        z[(bz * M + gr) * N + gc] = {store}",
        "        bz += cuda.gridDim.z",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Advanced indexing. The index space is the result's shape (rank R); source dimension d reads its
# coordinate either from result dimension role[d] >= 0, or from index array k = -1 - role[d] (rows
# of the int64 matrix I, n_adv x bsize) at the flat position b of the result's broadcast block
# (result dims p0 .. p0 + L - 1). Negative indices wrap; out-of-range ones set flag[0].
# ---------------------------------------------------------------------------------------------
def _index_lines(roles: tuple[int, ...], p0: int, nblock: int, ind: str) -> list[str]:
    lines = []
    if nblock:
        terms = [f"c{p0 + t} * bs{t}" for t in range(nblock)]
        lines.append(f"{ind}b = {' + '.join(terms)}")
    parts = ["vo"]
    for d, role in enumerate(roles):
        if role >= 0:
            parts.append(f"c{role} * vs{d}")
        else:
            k = -1 - role
            lines += [
                f"{ind}x{d} = I[{k} * bsize + b]",
                f"{ind}if x{d} < 0:",
                f"{ind}    x{d} += vn{d}",
                f"{ind}if x{d} < 0 or x{d} >= vn{d}:",
                f"{ind}    flag[0] = 1",
                f"{ind}    x{d} = 0",
            ]
            parts.append(f"x{d} * vs{d}")
    lines.append(f"{ind}src = {' + '.join(parts)}")
    return lines


def _index_args(rank: int, roles: tuple[int, ...], nblock: int) -> list[str]:
    args = ["n"] + shape_args("c", rank) + ["v", "vo"]
    args += [f"vs{d}" for d in range(len(roles))] + [f"vn{d}" for d in range(len(roles))]
    args += ["I", "bsize"] + [f"bs{t}" for t in range(nblock)] + ["flag"]
    return args


def gather(rank: int, roles: tuple[int, ...], p0: int, nblock: int, store: str, cache: bool) -> str:
    """z (contiguous, the result) = v[index]."""
    args = _index_args(rank, roles, nblock) + ["z"]
    lines = [jit_line(cache) + f"def kernel({', '.join(args)}):"]
    lines += ["    i = cuda.grid(1)", "    step = cuda.gridsize(1)", "    while i < n:"]
    lines += unravel("i", "c", rank, "        ")
    lines += _index_lines(roles, p0, nblock, "        ")
    lines += ["        w = v[src]", f"        z[i] = {store}", "        i += step"]
    return "\n".join(lines) + "\n"


def scatter(rank: int, roles: tuple[int, ...], p0: int, nblock: int, mode: str, cache: bool) -> str:
    """v[index] (op)= u, with u broadcast over the index space through strides ``us*``.

    ``src`` is a position in the buffer ``v`` (offset and strides are the target view's). ``mode``:
    "add" (atomic add: repeated indices accumulate), "claim" (``own``, an int64 array as long as the
    buffer, gets the atomic max of the index-space position: the last write in C order wins, as in
    NumPy), "set_claimed" (write where ``own`` holds this position)."""
    args = _index_args(rank, roles, nblock) + ["u", "uo"] + [f"us{d}" for d in range(rank)] + ["own"]
    lines = [jit_line(cache) + f"def kernel({', '.join(args)}):"]
    lines += ["    i = cuda.grid(1)", "    step = cuda.gridsize(1)", "    while i < n:"]
    lines += unravel("i", "c", rank, "        ")
    lines += _index_lines(roles, p0, nblock, "        ")
    uval = f"u[{offset('uo', 'c', 'us', rank)}]"
    if mode == "add":
        lines.append(f"        cuda.atomic.add(v, src, {uval})")
    elif mode == "claim":
        lines.append("        cuda.atomic.max(own, src, i)")
    else:
        lines += ["        if own[src] == i:", f"            v[src] = {uval}"]
    lines.append("        i += step")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# nonzero: positions (inclusive prefix counts) -> coordinates, one row per dimension.
# ---------------------------------------------------------------------------------------------
def nonzero(rank: int, cache: bool) -> str:
    args = ["n", "total"] + shape_args("c", rank) + ["flags", "pos", "z"]
    lines = [jit_line(cache) + f"def kernel({', '.join(args)}):"]
    lines += ["    i = cuda.grid(1)", "    step = cuda.gridsize(1)", "    while i < n:", "        if flags[i] != 0:"]
    lines.append("            j = pos[i] - 1")
    lines += unravel("i", "c", rank, "            ")
    lines += [f"            z[{d} * total + j] = c{d}" for d in range(rank)]
    lines.append("        i += step")
    return "\n".join(lines) + "\n"
