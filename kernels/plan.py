"""Planning: a Wengert list becomes a ``Plan``, the encoded program the CPU executor runs.

A plan depends only on the list's structure (shapes, dtypes, primitives, params, guards), never on
values, so one plan serves every list with the same ``structural_hash``.

1. Layouts. Every variable is a view ``(root, offset, strides)`` of a *root*: an input, a constant,
   or the output of a computing equation (C-contiguous). View equations (``lower.View``) get their
   layout from NumPy itself, applied to a dummy array of the input's layout, so their semantics are
   NumPy's; a reshape that needs a copy becomes a copy.
2. Nodes. Equations are grouped in program order: consecutive elementwise equations and reductions
   over the same iteration shape form one group (one pass over memory, ``interp._group``); a scan,
   a host equation or a guard ends the open group. A group never reads a value it computes through
   a view, nor a reduction's output before the group ends.
3. Storage. A value computed in a group stays in a register unless something outside the group (a
   later node, a view, a guard, the list's outputs) reads it. Stored roots get memory: the list's
   outputs in a fresh output block per run, host results in their own arrays, everything else in an
   arena reused across runs, where buffers whose values are dead are reused (an offset is free once
   the last node reading the value has run; a host result may alias its inputs, so it keeps them
   alive).
4. Encoding (``ops``): register allocation per group (a register is freed after its last use), one
   operand row per (value, group), iteration axes merged where every operand allows.

Invariants: the program never writes to inputs or constants, never lets two live values share
memory, and checks every guard before anything that depends on it runs (a guard ends the open
group; guards the interpreter cannot check run on the host, ending the segment).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradjit.wengert import Eqn, Lit, Var, Wengert

from . import lower, ops
from .lower import B1, F4, I4, I8, Ew, Matmul, Reduce, Scan, Scatter, View
from .ops import F64, I64

ARENA, OUT, EXT = 0, 1, 2  # root storage kinds; EXT roots take slots 2, 3, ...
ALIGN = 64
PINNED = 16  # registers a group may hold for its whole run (literals, constant operands)


@dataclass
class Layout:
    root: int  # var index of the root holding the elements
    offset: int  # elements from the root's first element
    strides: tuple[int, ...]  # in elements
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class Node:
    kind: str  # "group", "scan", "matmul", "scatter", "guard", "host"
    shape: tuple[int, ...] = ()  # a group's iteration shape
    eqns: list[int] = field(default_factory=list)
    produced: set[int] = field(default_factory=set)  # vars computed here
    pending: set[int] = field(default_factory=set)  # vars complete only when the group ends
    guard: int = -1


@dataclass
class Plan:
    prog: np.ndarray
    fconst: np.ndarray  # constants of the program; literals are filled in per list by ``bind_literals``
    iconst: np.ndarray
    literals: list[tuple[int, int, int, int, Any]]  # (file, slot, eqn index, input index, loop dtype)
    steps: list[tuple]  # ("seg", i0, i1) | ("host", eqn_index) | ("hguard", guard_index)
    n_slots: int
    ext_slot: dict[int, int]  # root var -> slot (inputs, consts, host results)
    kernel_ext: set[int]  # EXT roots whose address the program reads
    kernel_inputs: list[int]  # those that are inputs or constants (the others are host results)
    arena_bytes: int
    out_bytes: int
    root_kind: dict[int, int]
    root_off: dict[int, int]  # ARENA/OUT roots: byte offset in their region
    layouts: dict[int, Layout]
    view_eqn: dict[int, Eqn]  # view var -> the view equation (to rebuild host objects of EXT roots)
    host_reads: set[int]  # vars that host steps, host guards or outputs need as arrays
    arena_inputs: list[int]  # inputs and constants (single values) copied into the arena at each run
    consts: frozenset[int]  # the list's constants (var indices)
    n_eqns: int
    groups: int = 0
    stats: dict = field(default_factory=dict)


def _cstrides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, s = [], 1
    for n in reversed(shape):
        out.append(s)
        s *= n
    return tuple(reversed(out))


def _dummy(layout: Layout) -> tuple[np.ndarray, int]:
    """An array with ``layout``'s shape and strides over a one-element buffer (never read)."""
    base = np.zeros(1, layout.dtype)
    isz = layout.dtype.itemsize
    arr = np.lib.stride_tricks.as_strided(base, layout.shape, tuple(s * isz for s in layout.strides))
    return arr, base.__array_interface__["data"][0]


def _view_layout(eqn: Eqn, src: Layout) -> Layout | None:
    """The layout of view equation ``eqn`` on input layout ``src`` (None: a reshape needing a copy)."""
    name, params = eqn.prim.name, eqn.params
    if name == "stop_gradient":
        return Layout(src.root, src.offset, src.strides, src.shape, src.dtype)
    arr, addr0 = _dummy(src)
    if name == "reshape":
        try:
            res = np.reshape(arr, params["shape"], copy=False)
        except (ValueError, TypeError):
            return None
    elif name == "transpose":
        res = np.transpose(arr, params["axes"])
    elif name == "broadcast_to":
        res = np.broadcast_to(arr, params["shape"])
    else:  # basic getitem
        return index_layout(params["tree"], src, eqn.out.shape)
    return _layout_of(res, addr0, src, eqn.out.shape)


def index_layout(tree: tuple, src: Layout, shape: tuple[int, ...] | None = None) -> Layout | None:
    """The layout of ``x[tree]`` (basic indexing) for ``x`` of layout ``src``; None unless it has
    ``shape`` (when given). A trailing Ellipsis keeps a 0-d result a view (never a read)."""
    arr, addr0 = _dummy(src)
    tree = tuple(tree)
    return _layout_of(arr[tree if Ellipsis in tree else (*tree, Ellipsis)], addr0, src, shape)


def _layout_of(res: np.ndarray, addr0: int, src: Layout, shape: tuple[int, ...] | None) -> Layout | None:
    isz = src.dtype.itemsize
    off_bytes = res.__array_interface__["data"][0] - addr0
    if (shape is not None and res.shape != shape) or off_bytes % isz or any(s % isz for s in res.strides):
        return None
    return Layout(src.root, src.offset + off_bytes // isz, tuple(s // isz for s in res.strides), res.shape, src.dtype)


def _aligned(lay: Layout, shape: tuple[int, ...]) -> list[int]:
    """``lay``'s strides broadcast to iteration ``shape`` (0 along broadcast axes)."""
    r, q = len(shape), len(lay.shape)
    out = []
    for d in range(r):
        k = d - (r - q)
        out.append(0 if k < 0 or (lay.shape[k] == 1 and shape[d] != 1) else lay.strides[k])
    return out


def _collapse(shape: tuple[int, ...], strides: list[list[int]], keep_last: bool = False) -> tuple[list, list]:
    """Drop unit axes and merge adjacent axes where every operand's strides allow."""
    axes = [d for d in range(len(shape)) if shape[d] != 1 or (keep_last and d == len(shape) - 1)]
    sh = [shape[d] for d in axes]
    st = [[s[d] for d in axes] for s in strides]
    i = len(sh) - 2 - (1 if keep_last else 0)
    while i >= 0:
        if all(s[i] == s[i + 1] * sh[i + 1] for s in st):
            sh[i] *= sh[i + 1]
            for s in st:
                s[i] = s[i + 1]
                del s[i + 1]
            del sh[i + 1]
        i -= 1
    if not sh:
        sh, st = [1], [[0] for _ in st]
    return sh, st


class Planner:
    def __init__(self, wl: Wengert):
        self.wl = wl
        self.vars: dict[int, Var] = {v.index: v for v in (*wl.inputs, *wl.consts)}
        self.vars.update({e.out.index: e.out for e in wl.eqns})
        self.producer: dict[int, int] = {e.out.index: i for i, e in enumerate(wl.eqns)}
        self.layouts: dict[int, Layout] = {}
        self.kinds: list[Any] = []
        self.view_eqn: dict[int, Eqn] = {}
        self.copy_shape: dict[int, tuple] = {}  # eqn index -> iteration shape of a reshape done as a copy

    # -- 1. layouts and classification ------------------------------------------------------
    def classify(self) -> None:
        for v in (*self.wl.inputs, *self.wl.consts):
            self.layouts[v.index] = Layout(v.index, 0, _cstrides(v.shape), v.shape, np.dtype(v.dtype))
        for i, e in enumerate(self.wl.eqns):
            kind = lower.classify(e)
            out = e.out
            if isinstance(kind, View):
                src = e.ins[0]
                lay = _view_layout(e, self.layouts[src.index]) if type(src) is not Lit else None
                if lay is not None:
                    self.layouts[out.index] = lay
                    self.view_eqn[out.index] = e
                elif e.prim.name == "reshape" and type(src) is not Lit and lower.file_of(src.dtype) is not None:
                    f = lower.file_of(src.dtype)
                    kind = Ew([("copy", f, [("x", 0, f, src.dtype)])])
                    self.copy_shape[i] = src.shape
                else:
                    kind = None
            if not isinstance(kind, View):
                self.layouts[out.index] = Layout(out.index, 0, _cstrides(out.shape), out.shape, np.dtype(out.dtype))
            self.kinds.append(kind)

    def root(self, v: int) -> int:
        return self.layouts[v].root

    def iter_shape(self, i: int) -> tuple[int, ...]:
        e, k = self.wl.eqns[i], self.kinds[i]
        if i in self.copy_shape:
            return self.copy_shape[i]
        return e.ins[0].shape if isinstance(k, Reduce) else e.out.shape

    # -- 2. nodes ---------------------------------------------------------------------------
    def schedule(self) -> list[Node]:
        nodes: list[Node] = []
        open_: list[Node | None] = [None]
        guards_at: dict[int, list[int]] = defaultdict(list)
        for gi, g in enumerate(self.wl.guards):
            guards_at[g.position].append(gi)

        def close() -> None:
            if open_[0] is not None:
                nodes.append(open_[0])
                open_[0] = None

        def touches_open(v: int) -> bool:
            g = open_[0]
            return g is not None and (self.root(v) in g.produced or v in g.pending)

        def guard(gi: int) -> None:
            if touches_open(self.wl.guards[gi].var.index):
                close()
            nodes.append(Node("guard", guard=gi))

        for i, e in enumerate(self.wl.eqns):
            for gi in guards_at.get(i, ()):
                guard(gi)
            kind = self.kinds[i]
            if isinstance(kind, View):
                if touches_open(e.ins[0].index):
                    close()
                continue
            if isinstance(kind, (Ew, Reduce)):
                shape = self.iter_shape(i)
                g = open_[0]
                if g is not None:
                    ins = [a.index for a in e.ins if type(a) is not Lit]
                    clash = any(v in g.pending or (v not in g.produced and self.root(v) in g.produced) for v in ins)
                    if g.shape != shape or clash:
                        close()
                if open_[0] is None:
                    open_[0] = Node("group", shape=shape)
                g = open_[0]
                g.eqns.append(i)
                g.produced.add(e.out.index)
                if isinstance(kind, Reduce) or i in self.copy_shape:
                    g.pending.add(e.out.index)
                continue
            close()
            nk = {Scan: "scan", Matmul: "matmul", Scatter: "scatter"}.get(type(kind), "host")
            nodes.append(Node(nk, eqns=[i], produced={e.out.index}))
        for gi in guards_at.get(len(self.wl.eqns), ()):
            guard(gi)
        close()
        return nodes

    # -- 3. storage ---------------------------------------------------------------------------
    def storage(self, nodes: list[Node]) -> None:
        wl = self.wl
        n_end = len(nodes)
        group_of: dict[int, int] = {}
        for k, nd in enumerate(nodes):
            for v in nd.produced:
                group_of[v] = k
        reads: dict[int, set[int]] = defaultdict(set)  # root -> nodes reading it from memory
        host_reads: set[int] = set()
        for k, nd in enumerate(nodes):
            if nd.kind == "guard":
                v = wl.guards[nd.guard].var.index
                reads[self.root(v)].add(k)
                host_reads.add(v)  # for a guard checked on the host
                continue
            for i in nd.eqns:
                for a in wl.eqns[i].ins:
                    if type(a) is Lit:
                        continue
                    in_register = nd.kind == "group" and a.index in nd.produced and a.index not in nd.pending
                    if not in_register:
                        reads[self.root(a.index)].add(k)
                        if nd.kind == "host":
                            host_reads.add(a.index)
        outputs = [a.index for a in wl.outputs if isinstance(a, Var)]
        out_roots = {self.root(v) for v in outputs}
        host_reads.update(outputs)
        self.root_kind: dict[int, int] = {}
        self.stored: set[int] = set()
        self.arena_inputs: list[int] = []
        for v in (*wl.inputs, *wl.consts):
            # a single value is copied into the arena (cheaper than taking the address of a new array)
            small = int(np.prod(v.shape)) == 1 and lower.file_of(v.dtype) is not None
            self.root_kind[v.index] = ARENA if small else EXT
            if small:
                self.arena_inputs.append(v.index)
                group_of[v.index] = -1
        for k, nd in enumerate(nodes):
            for v in nd.produced:
                if self.root(v) != v:
                    continue  # impossible for produced values; kept for safety
                needed = v in out_roots or any(r != k for r in reads.get(v, ())) or v in nd.pending
                if nd.kind == "host":
                    self.root_kind[v] = EXT
                elif needed or nd.kind in ("scan", "matmul", "scatter"):
                    # a returned single value is read out of the arena as a scalar (or a copy)
                    big_output = v in out_roots and int(np.prod(self.vars[v].shape)) != 1
                    self.root_kind[v] = OUT if big_output else ARENA
                if needed or nd.kind != "group":
                    self.stored.add(v)
        # liveness of arena roots: [defining node, last reading node]; host results keep their inputs alive
        last = {r: max(ks) for r, ks in reads.items()}
        for r in out_roots:
            last[r] = n_end  # never reused
        for k in range(n_end - 1, -1, -1):
            nd = nodes[k]
            if nd.kind != "host":
                continue
            out = next(iter(nd.produced))
            end = n_end if out in out_roots else last.get(out, k)
            for a in wl.eqns[nd.eqns[0]].ins:
                if type(a) is not Lit:
                    r = self.root(a.index)
                    last[r] = max(last.get(r, k), end)
        in_arena = [r for r, kd in self.root_kind.items() if kd == ARENA]
        arena = sorted((group_of[r], max(last.get(r, group_of[r]), group_of[r]), r) for r in in_arena)
        self.root_off: dict[int, int] = {}
        live: list[tuple[int, int, int]] = []  # (end node, offset, size)
        free: list[tuple[int, int]] = []  # (offset, size)
        top = 0
        for start, end, r in arena:
            for item in [x for x in live if x[0] < start]:
                live.remove(item)
                free.append((item[1], item[2]))
            size = -(-self.vars[r].dtype.itemsize * max(int(np.prod(self.vars[r].shape)), 1) // ALIGN) * ALIGN
            fit = min((f for f in free if f[1] >= size), key=lambda f: f[1], default=None)
            if fit is not None:
                free.remove(fit)
                off = fit[0]
                if fit[1] > size:
                    free.append((fit[0] + size, fit[1] - size))
            else:
                off, top = top, top + size
            self.root_off[r] = off
            live.append((end, off, size))
        self.arena_bytes = max(top, ALIGN)
        top = 0
        for r in sorted(r for r, kd in self.root_kind.items() if kd == OUT):
            self.root_off[r] = top
            top += -(-self.vars[r].dtype.itemsize * max(int(np.prod(self.vars[r].shape)), 1) // ALIGN) * ALIGN
        self.out_bytes = top
        self.host_reads = host_reads
        self.ext_slot: dict[int, int] = {}
        for r, kd in self.root_kind.items():
            if kd == EXT:
                self.ext_slot[r] = 2 + len(self.ext_slot)

    # -- 4. encoding --------------------------------------------------------------------------
    def operand(self, v: int, strides: list[int], shape: list[int], lay: Layout | None = None) -> list[int]:
        """An operand row for var ``v`` (or layout ``lay``) with ``strides`` over iteration ``shape``."""
        lay = lay or self.layouts[v]
        r = lay.root
        kind = self.root_kind[r]
        slot = {ARENA: 0, OUT: 1}.get(kind, self.ext_slot.get(r, -1))
        if kind == EXT:
            self.kernel_ext.add(r)
        lo = lay.offset + sum(min(0, s * (n - 1)) for s, n in zip(strides, shape))
        hi = lay.offset + sum(max(0, s * (n - 1)) for s, n in zip(strides, shape))
        isz = lay.dtype.itemsize
        row = [slot, self.root_off.get(r, 0) + lo * isz, ops.DTYPE_CODE[lay.dtype], hi - lo + 1, lay.offset - lo, 0]
        return row + list(strides) + [0] * (ops.MAXR - len(strides))

    def encode(self, nodes: list[Node]) -> Plan:
        self.kernel_ext: set[int] = set()
        self.instrs: list[list[int]] = []
        self.oprows: list[list[int]] = []
        self.opnds: list[list[int]] = []
        self.iters: list[list[int]] = []
        self.fconst: list[float] = []
        self.iconst: list[int] = []
        self.literals: list[tuple[int, int, int, int, Any]] = []
        self.nreg = 2
        steps: list[tuple] = []
        seg_start = 0

        def flush_segment() -> None:
            nonlocal seg_start
            if len(self.instrs) > seg_start:
                steps.append(("seg", seg_start, len(self.instrs)))
            seg_start = len(self.instrs)

        for nd in nodes:
            if nd.kind == "group":
                _GroupEncoder(self, nd).encode()
            elif nd.kind == "scan":
                if not self.encode_scan(nd.eqns[0]):
                    flush_segment()
                    steps.append(("host", nd.eqns[0]))
            elif nd.kind == "matmul":
                self.encode_matmul(nd.eqns[0])
            elif nd.kind == "scatter":
                if not self.encode_scatter(nd.eqns[0]):
                    flush_segment()
                    steps.append(("host", nd.eqns[0]))
            elif nd.kind == "guard":
                if not self.encode_guard(nd.guard):
                    flush_segment()
                    steps.append(("hguard", nd.guard))
            else:
                flush_segment()
                steps.append(("host", nd.eqns[0]))
        flush_segment()
        prog = self.pack()
        return Plan(
            prog=prog,
            fconst=np.array(self.fconst or [0.0], np.float64),
            iconst=np.array(self.iconst or [0], np.int64),
            literals=self.literals,
            steps=steps,
            n_slots=2 + len(self.ext_slot),
            ext_slot=self.ext_slot,
            kernel_ext=self.kernel_ext,
            kernel_inputs=[v.index for v in (*self.wl.inputs, *self.wl.consts) if v.index in self.kernel_ext],
            arena_bytes=self.arena_bytes,
            out_bytes=self.out_bytes,
            root_kind=self.root_kind,
            root_off=self.root_off,
            layouts=self.layouts,
            view_eqn=self.view_eqn,
            host_reads=self.host_reads,
            arena_inputs=self.arena_inputs,
            consts=frozenset(c.index for c in self.wl.consts),
            n_eqns=len(self.wl.eqns),
            groups=sum(nd.kind == "group" for nd in nodes),
        )

    def add_iter(self, shape: list[int]) -> int:
        self.iters.append([len(shape), *shape, *[0] * (ops.MAXR - len(shape))])
        return len(self.iters) - 1

    def add_const(self, value: float | int, file: int) -> int:
        table = self.fconst if file == F64 else self.iconst
        table.append(value)
        return len(table) - 1

    def add_literal(self, file: int, i: int, k: int, dtype: Any) -> int:
        """A slot for the literal input ``k`` of equation ``i``: its value is not part of the structure,
        so each list fills it in (``bind_literals``)."""
        slot = self.add_const(0 if file == I64 else 0.0, file)
        self.literals.append((file, slot, i, k, dtype))
        return slot

    def encode_scan(self, i: int) -> bool:
        e = self.wl.eqns[i]
        sc: Scan = self.kinds[i]
        x, out = e.ins[0], e.out
        lx, lo = self.layouts[x.index], self.layouts[out.index]
        axis = e.params.get("axis")
        nd = len(x.shape)
        if axis is None:  # argmax/argmin of the flattened array: only if it is one run of memory
            sh, (sx,) = _collapse(x.shape, [list(lx.strides)])
            if len(sh) != 1:
                return False
            sh, strides_in, strides_out = sh, sx, [0]
        else:
            axis = axis % nd
            perm = [d for d in range(nd) if d != axis] + [axis]
            shape = tuple(x.shape[d] for d in perm)
            sin = [lx.strides[d] for d in perm]
            if e.prim.name in ("cumsum", "cumprod"):
                sout = [lo.strides[d] for d in perm]
            else:  # argmax/argmin: one output per position of the other axes
                keep = e.params.get("keepdims", False)
                ost = list(lo.strides)
                sout = [ost[d if keep else (d if d < axis else d - 1)] for d in perm[:-1]] + [0]
            sh, (strides_in, strides_out) = _collapse(shape, [sin, sout], keep_last=True)
        it = self.add_iter(sh)
        pin = len(self.opnds)
        self.opnds.append(self.operand(x.index, strides_in, sh))
        self.opnds.append(self.operand(out.index, strides_out, sh))
        self.instrs.append([ops.K_SCAN, sc.op, sc.file, it, pin, pin + 1, int(sc.round32), 0])
        return True

    def encode_matmul(self, i: int) -> None:
        """``out = a @ b`` with NumPy's rules (1-D operands promoted, batch axes broadcast) as an
        iteration over (batch..., M, N, K)."""
        e = self.wl.eqns[i]
        a, b, out = e.ins[0], e.ins[1], e.out
        la, lb, lo = self.layouts[a.index], self.layouts[b.index], self.layouts[out.index]
        m = a.shape[-2] if len(a.shape) > 1 else 1
        n = b.shape[-1] if len(b.shape) > 1 else 1
        k = a.shape[-1]
        nb = len(out.shape) - (len(a.shape) > 1) - (len(b.shape) > 1)
        batch = list(out.shape[:nb])

        def batch_strides(lay: Layout, core: int) -> list[int]:
            nd = len(lay.shape) - core
            return _aligned(Layout(lay.root, lay.offset, lay.strides[:nd], lay.shape[:nd], lay.dtype), tuple(batch))

        sa = batch_strides(la, min(2, len(a.shape)))
        sa += [la.strides[-2] if len(a.shape) > 1 else 0, 0, la.strides[-1]]
        sb = batch_strides(lb, min(2, len(b.shape)))
        sb += [0, lb.strides[-1] if len(b.shape) > 1 else 0, lb.strides[-2] if len(b.shape) > 1 else lb.strides[-1]]
        so = list(lo.strides[:nb])
        so += [lo.strides[nb] if len(a.shape) > 1 else 0, lo.strides[-1] if len(b.shape) > 1 else 0, 0]
        shape = batch + [m, n, k]
        it = self.add_iter(shape)
        p = len(self.opnds)
        for v, st in ((a.index, sa), (b.index, sb), (out.index, so)):
            self.opnds.append(self.operand(v, st, shape))
        self.instrs.append([ops.K_MATMUL, 0, it, p, p + 1, p + 2, 0, 0])

    def encode_scatter(self, i: int) -> bool:
        """``out = copy(x); out[tree] += v`` (or ``= v``): two elementwise instructions, the second
        reading and writing a view of ``out`` (basic indexing never repeats an element)."""
        e = self.wl.eqns[i]
        sc: Scatter = self.kinds[i]
        x, v, out = e.ins[0], e.ins[1], e.out
        lo = self.layouts[out.index]
        view = index_layout(e.params["tree"], lo)
        if view is None or len(v.shape) > len(view.shape) or len(view.shape) > ops.MAXR or 0 in view.shape:
            return False
        if any(n not in (1, m) for n, m in zip(v.shape[::-1], view.shape[::-1])):
            return False
        f = sc.file
        # pass 1: the copy of x
        sh, (sx, so) = _collapse(out.shape, [_aligned(self.layouts[x.index], out.shape), list(lo.strides)])
        p = len(self.opnds)
        self.opnds.append(self.operand(x.index, sx, sh))
        self.opnds.append(self.operand(out.index, so, sh))
        o0 = len(self.oprows)
        self.oprows += [[ops.OP_LOAD, f, 0, p, 0, 0], [ops.OP_STORE, f, 0, p + 1, 0, 0]]
        self.instrs.append([ops.K_EW, 0, self.add_iter(sh), o0, o0, len(self.oprows), p, p + 2])
        # pass 2: v into the view
        sh, (sw, sv) = _collapse(view.shape, [list(view.strides), _aligned(self.layouts[v.index], view.shape)])
        p = len(self.opnds)
        self.opnds.append(self.operand(out.index, sw, sh, view))
        self.opnds.append(self.operand(v.index, sv, sh))
        o0 = len(self.oprows)
        if sc.add:
            self.oprows += [
                [ops.OP_LOAD, f, 0, p, 0, 0],
                [ops.OP_LOAD, f, 1, p + 1, 0, 0],
                [ops.OPCODE["add"], f, 2, 0, 1, 0],
                [ops.OP_STORE, f, 2, p, 0, 0],
            ]
        else:
            self.oprows += [[ops.OP_LOAD, f, 1, p + 1, 0, 0], [ops.OP_STORE, f, 1, p, 0, 0]]
        self.nreg = max(self.nreg, 3)
        self.instrs.append([ops.K_EW, 0, self.add_iter(sh), o0, o0, len(self.oprows), p, p + 2])
        return True

    def encode_guard(self, gi: int) -> bool:
        g = self.wl.guards[gi]
        v = g.var
        if int(np.prod(v.shape)) != 1 or lower.file_of(v.dtype) is None or type(g.observed) not in (bool, int):
            return False
        if g.kind == "bool":
            gk, file = ops.G_BOOL, lower.file_of(v.dtype)
        elif g.kind in ("int", "index") and np.dtype(v.dtype) in (I8, I4) or (g.kind == "int" and v.dtype == B1):
            gk, file = ops.G_INT, I64
        else:
            return False
        if not -(2**63) <= int(g.observed) < 2**63:
            return False
        p = len(self.opnds)
        self.opnds.append(self.operand(v.index, [], []))
        self.instrs.append([ops.K_GUARD, p, gk, gi, int(g.observed), file, 0, 0])
        return True

    def pack(self) -> np.ndarray:
        row = min(ops.BLK, max((it[it[0]] for it in self.iters), default=1))
        header = [ops.MAGIC, len(self.instrs), 0, 0, 0, 0, self.nreg, row]
        parts = [self.instrs, self.oprows, self.opnds, self.iters]
        widths = [ops.IW, ops.OW, ops.PW, ops.ITW]
        flat: list[int] = list(header)
        for hi, rows, w in zip((ops.H_OFF_INSTR, ops.H_OFF_OPS, ops.H_OFF_OPNDS, ops.H_OFF_ITERS), parts, widths):
            flat[hi] = len(flat)
            for row in rows:
                assert len(row) == w, (row, w)
                flat.extend(row)
        return np.array(flat, np.int64)


class _GroupEncoder:
    """Register allocation and ops for one group (see the module docstring, step 4)."""

    def __init__(self, planner: Planner, node: Node):
        self.p = planner
        self.node = node
        self.shape = node.shape

    def value_key(self, arg: tuple, e: Eqn, m: int) -> tuple:
        """A key naming the register value an op argument reads."""
        if arg[0] == "t":
            return ("t", m, arg[1])
        if arg[0] == "c":
            return ("const", F64, float(np.dtype(arg[2]).type(arg[1])))
        _, k, file, dt = arg
        a = e.ins[k]
        if type(a) is Lit:
            return ("lit", file, self.node.eqns[m], k, dt)
        if a.index in self.node.produced and a.index not in self.node.pending:
            return ("cvt", a.index, file) if self.home[a.index] != file else ("v", a.index)
        return ("load", a.index, file)

    def encode(self) -> None:
        p, wl = self.p, self.p.wl
        # pass 1: the op sequence with symbolic registers; each value's last use
        seq: list[tuple] = []  # (opname, file, dst key, arg keys, member m)
        self.home: dict[int, int] = {}
        self.converted: set[tuple] = set()
        for m, i in enumerate(self.node.eqns):
            e, kind = wl.eqns[i], p.kinds[i]
            if isinstance(kind, Reduce):
                key = self.value_key(("x", 0, kind.file, e.ins[0].dtype), e, m)
                self.cvt_first(seq, key, m)
                seq.append(("acc", kind.file, None, [key], m))
                continue
            for j, (name, file, args) in enumerate(kind.ops):
                keys = [self.value_key(a, e, m) for a in args]
                for key in keys:
                    self.cvt_first(seq, key, m)
                last = j == len(kind.ops) - 1
                dst = ("v", e.out.index) if last else ("t", m, j)
                seq.append((name, file, dst, keys, m))
                if last:
                    self.home[e.out.index] = file
        last_use: dict[tuple, int] = {}
        for pos, (_, _, _, keys, _) in enumerate(seq):
            for key in keys:
                last_use[key] = pos
        # operands: loads and stores, aligned to the iteration shape, then merged axes
        rows: list[tuple[Any, list[int], Layout | None]] = []  # (var, strides, layout override)
        row_of: dict[tuple, int] = {}

        def want(key: tuple, v: int, strides: list[int], lay: Layout | None = None) -> None:
            if key not in row_of:
                row_of[key] = len(rows)
                rows.append((v, strides, lay))

        for name, _, dst, keys, m in seq:
            e = wl.eqns[self.node.eqns[m]]
            for key in keys:
                if key[0] == "load":
                    want(("in", key[1]), key[1], _aligned(p.layouts[key[1]], self.shape))
            if name == "acc":
                want(("acc", e.out.index), e.out.index, self.acc_strides(e))
            elif dst is not None and dst[0] == "v" and e.out.index in p.stored:
                lay = p.layouts[e.out.index]
                if self.node.eqns[m] in p.copy_shape:  # the out root read in the input's shape
                    lay = Layout(lay.root, 0, _cstrides(self.shape), self.shape, lay.dtype)
                want(("out", e.out.index), e.out.index, _aligned(lay, self.shape), lay)
        shape, strides = _collapse(self.shape, [list(r[1]) for r in rows])
        base = len(p.opnds)
        for (v, _, lay), st in zip(rows, strides):
            p.opnds.append(p.operand(v, st, shape, lay))
        const_iter = {k: all(s == 0 for s in strides[r]) for k, r in row_of.items()}
        # pass 2: registers
        prologue: list[list[int]] = []
        body: list[list[int]] = []
        reg: dict[tuple, int] = {}
        pinned: set[tuple] = set()
        free: list[int] = []
        used = [0]

        def alloc() -> int:
            if free:
                return free.pop()
            used[0] += 1
            return used[0] - 1

        def constant(key: tuple) -> bool:
            return key[0] in ("lit", "const") or (key[0] == "load" and const_iter[("in", key[1])])

        def ensure(key: tuple, file: int, pin: bool = False) -> int:
            if key in reg:
                return reg[key]
            r = alloc()
            reg[key] = r
            where = prologue if pin else body
            if pin:
                pinned.add(key)
            if key[0] in ("lit", "const"):
                if key not in slot:
                    slot[key] = p.add_literal(*key[1:]) if key[0] == "lit" else p.add_const(key[2], key[1])
                where.append([ops.OP_LIT, key[1], r, slot[key], 0, 0])
            elif key[0] == "load":
                where.append([ops.OP_LOAD, key[2], r, base + row_of[("in", key[1])], 0, 0])
            else:
                raise AssertionError(f"value {key} used before it is computed")
            return r

        # The first PINNED values filled once by the prologue (literals, operands constant over the
        # iteration) take their registers first, so no body op ever reuses them; any further ones
        # are filled in the body where they are used (a long unrolled loop has a literal per step).
        slot: dict[tuple, int] = {}
        for _, file, _, keys, _ in seq:
            for key in keys:
                if constant(key) and key not in reg and len(pinned) < PINNED:
                    ensure(key, file, pin=True)
        for pos, (name, file, dst, keys, m) in enumerate(seq):
            e = wl.eqns[self.node.eqns[m]]
            srcs = [ensure(key, file) for key in keys]
            # the destination is taken before the operands are released: an op never writes the
            # register it reads (LLVM does not vectorize a loop whose input and output overlap)
            d = alloc() if name != "acc" else -1
            for key in keys:
                if last_use[key] == pos and key not in pinned and key in reg:
                    free.append(reg.pop(key))
            if name == "acc":
                kind = p.kinds[self.node.eqns[m]]
                opnd = base + row_of[("acc", e.out.index)]
                prologue.append([ops.OP_INIT, kind.file, opnd, p.add_const(kind.identity, kind.file), 0, 0])
                body.append([ops.OP_ACC, kind.file, kind.acc, srcs[0], opnd, 0])
                continue
            if name == "cvt":
                body.append([ops.OP_CVT, file, d, srcs[0], 0, 0])
            else:
                body.append([ops.OPCODE[name], file, d, *(srcs + [0, 0, 0])[:3]])
            reg[dst] = d
            if dst[0] == "v" and ("out", e.out.index) in row_of:
                body.append([ops.OP_STORE, file, d, base + row_of[("out", e.out.index)], 0, 0])
            if dst not in last_use:  # never read again in the group
                free.append(reg.pop(dst))
        p.nreg = max(p.nreg, used[0])
        o0 = len(p.oprows)
        p.oprows.extend(prologue)
        b0 = len(p.oprows)
        p.oprows.extend(body)
        it = p.add_iter(shape)
        p.instrs.append([ops.K_EW, 0, it, o0, b0, len(p.oprows), base, len(p.opnds)])

    def cvt_first(self, seq: list, key: tuple, m: int) -> None:
        """A value read in the other register file is converted once, where it is first needed."""
        if key[0] == "cvt" and key not in self.converted:
            self.converted.add(key)
            seq.append(("cvt", key[2], key, [("v", key[1])], m))

    def acc_strides(self, e: Eqn) -> list[int]:
        axis = e.params["axis"]
        x = e.ins[0]
        axes = set(range(len(x.shape))) if axis is None else {a % len(x.shape) for a in axis}
        keep = e.params.get("keepdims", False)
        ost = _cstrides(e.out.shape)
        out, k = [], 0
        for d in range(len(x.shape)):
            if d in axes:
                out.append(0)
                if keep:
                    k += 1
            else:
                out.append(ost[k])
                k += 1
        return out


__all__ = ["Plan", "Planner", "make_plan", "bind_literals", "ARENA", "OUT", "EXT", "Layout", "F4", "I8"]


def bind_literals(plan: Plan, wl: Wengert) -> tuple[np.ndarray, np.ndarray]:
    """The plan's constant tables with ``wl``'s literal values, converted as NumPy converts them
    for the loop (a Python float with a float32 array is a float32)."""
    fconst, iconst = plan.fconst, plan.iconst
    if plan.literals:
        fconst, iconst = fconst.copy(), iconst.copy()
        for file, slot, i, k, dt in plan.literals:
            v = wl.eqns[i].ins[k].value
            if file == I64:
                iconst[slot] = int(v)
            else:
                cdt = dt if isinstance(dt, np.dtype) and dt.kind == "f" else np.dtype(np.float64)
                fconst[slot] = float(cdt.type(v))
    return fconst, iconst


def make_plan(wl: Wengert) -> Plan:
    """The plan of ``wl`` (a pure function of its structure)."""
    p = Planner(wl)
    p.classify()
    nodes = p.schedule()
    p.storage(nodes)
    plan = p.encode(nodes)
    plan.stats = {"nodes": len(nodes), "registers": p.nreg, "instructions": len(p.instrs)}
    return plan
