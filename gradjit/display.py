"""Views of a Wengert list for notebooks: an HTML table, Graphviz DOT source, and a rendered graph.

``Wengert._repr_html_`` / ``to_html`` / ``to_dot`` / ``render`` delegate here, so that
``wengert.py`` stays about the records themselves. All three show the same things as ``str()``:
inputs, constants, one equation per row or node (output variable, type, primitive, arguments,
parameters), guards where they were recorded, and outputs; equations of a reverse sweep are marked
and coloured by the depth of the ``grad`` that emitted them (``Wengert.sweep_depth``).

Rendering needs only Graphviz's ``dot`` program (``apt install graphviz``, ``brew install
graphviz``, ``conda install -c conda-forge graphviz``); the ``graphviz`` Python package is not
required. Without it, ``render`` raises ``GraphvizNotFoundError`` saying how to install it, and
``to_dot()`` still gives the source.

Invariants: everything user-controlled (parameter values, function names) is escaped for HTML and
DOT; output does not depend on the values held by the list, only on its structure and annotations
(``where`` is shown when recorded, in debug mode).
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from typing import Any

from .errors import GradjitError
from .wengert import Const, Eqn, Lit, Var, Wengert, _param_str, aval_str, sweep_label

__all__ = ["to_html", "to_dot", "render", "RenderedGraph", "GraphvizNotFoundError", "SWEEP_COLORS"]

# Background colours per sweep depth: 0 forward (none), 1 the outermost grad's reverse sweep, ...
SWEEP_COLORS = ("", "#fde8d0", "#e4dcf4", "#d6efe9", "#f6d8e4")
_INPUT_COLOR = "#dcefd9"
_CONST_COLOR = "#eeeeee"
_GUARD_COLOR = "#fff7c2"


def _sweep_color(depth: int) -> str:
    if depth == 0:
        return ""
    return SWEEP_COLORS[1 + (depth - 1) % (len(SWEEP_COLORS) - 1)]


def _atom_str(a: Any) -> str:
    return "None" if a is None else repr(a)


def _params_str(eqn: Eqn) -> str:
    return " ".join(f"{k}={_param_str(v)}" for k, v in eqn.params.items())


# -- HTML ---------------------------------------------------------------------------------------------
# Cell styles go in one scoped <style> block (inline styles on every cell would multiply the size);
# row colours are inline, so the sweeps stay visible where a viewer drops <style>.
_STYLE = (
    "<style>.gradjit-wengert table{border-collapse:collapse}"
    ".gradjit-wengert td,.gradjit-wengert th{padding:1px 8px;text-align:left;font-family:monospace;"
    "white-space:nowrap}.gradjit-wengert caption{text-align:left}</style>"
)


def _row(cells: list[str], ncols: int, color: str = "", title: str = "", cls: str = "gj-eqn") -> str:
    style = f' style="background:{color}"' if color else ""
    tip = f' title="{html.escape(title)}"' if title else ""
    tds = "".join(f"<td>{c}</td>" for c in cells) + "<td></td>" * (ncols - len(cells))
    return f'<tr class="{cls}"{style}{tip}>{tds}</tr>'


def _span_row(text: str, ncols: int, color: str = "", cls: str = "gj-note") -> str:
    style = f' style="background:{color}"' if color else ""
    return f'<tr class="{cls}"{style}><td colspan="{ncols}">{text}</td></tr>'


def to_html(w: Wengert, max_rows: int | None = 500) -> str:
    """A table of ``w``: inputs, constants, equations (with guards and sweep markers), outputs.

    At most ``max_rows`` equations are shown (``None``: all); a last row says how many were left out.
    """
    e = html.escape
    max_depth = w.max_sweep_depth()
    show_where = any(eq.where for eq in w.eqns)
    head = ["#", "var", "type", "op", "arguments", "params"] + (["source"] if show_where else [])
    ncols = len(head)
    n_rev = sum(1 for eq in w.eqns if w.sweep_depth(eq))
    caption = (
        f"Wengert list: {len(w.inputs)} input{'s' * (len(w.inputs) != 1)}, "
        f"{len(w.consts)} constant{'s' * (len(w.consts) != 1)}, {len(w.eqns)} equation{'s' * (len(w.eqns) != 1)}"
        + (f" ({len(w.eqns) - n_rev} forward, {n_rev} in reverse sweeps)" if n_rev else "")
        + f", {len(w.guards)} guard{'s' * (len(w.guards) != 1)}"
    )
    rows: list[str] = []
    for k, v in enumerate(w.inputs):
        rows.append(
            _row(["", e(repr(v)), e(aval_str(v.shape, v.dtype)), f"input {k}"], ncols, _INPUT_COLOR, cls="gj-input")
        )
    for c in w.consts:
        rows.append(
            _row(["", e(repr(c)), e(aval_str(c.shape, c.dtype)), "constant"], ncols, _CONST_COLOR, cls="gj-const")
        )
    guards = sorted(w.guards, key=lambda g: g.position)
    gi, depth = 0, 0
    shown = w.eqns if max_rows is None else w.eqns[:max_rows]
    for i, eq in enumerate(shown):
        while gi < len(guards) and guards[gi].position <= i:
            rows.append(_span_row(e(str(guards[gi])), ncols, _GUARD_COLOR, "gj-guard"))
            gi += 1
        d = w.sweep_depth(eq)
        if max_depth and d != depth:
            label = f"<b>&mdash; {e(sweep_label(d, max_depth))} &mdash;</b>"
            rows.append(_span_row(label, ncols, _sweep_color(d), "gj-sweep"))
            depth = d
        cells = [
            str(i),
            e(repr(eq.out)),
            e(aval_str(eq.out.shape, eq.out.dtype)),
            f"<b>{e(eq.prim.name)}</b>",
            e(" ".join(_atom_str(a) for a in eq.ins)),
            e(_params_str(eq)),
        ]
        if show_where:
            cells.append(e(eq.where or ""))
        rows.append(_row(cells, ncols, _sweep_color(d), sweep_label(d, max_depth) if d else ""))
    if len(shown) < len(w.eqns):
        rows.append(_span_row(f"&hellip; {len(w.eqns) - len(shown)} more equations (w.to_html(max_rows=None))", ncols))
    else:
        rows.extend(_span_row(e(str(g)), ncols, _GUARD_COLOR, "gj-guard") for g in guards[gi:])
    outs = " ".join(_atom_str(a) for a in w.outputs)
    rows.append(_span_row(f"<b>outputs:</b> {e(outs)}", ncols))
    th = "".join(f"<th>{h}</th>" for h in head)
    return (
        f'<div class="gradjit-wengert">{_STYLE}<table><caption>{e(caption)}</caption>'
        f"<thead><tr>{th}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>"
    )


# -- DOT ----------------------------------------------------------------------------------------------
def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def to_dot(w: Wengert, name: str = "wengert") -> str:
    """Graphviz DOT source: a node per input, constant, equation, guard and output; edges for data flow.

    Nodes are named after their variables (``v3``, ``c1``); an equation's node is labelled
    ``v3 = sin(v1)`` with its type and parameters, literals inline. Edges run from the node that
    defines a variable to each equation using it (labelled with the argument position when an
    equation has several arguments). Each reverse sweep is a coloured cluster.
    """
    max_depth = w.max_sweep_depth()
    lines = [
        f"digraph {_q(name)} {{",
        "  rankdir=TB;",
        '  graph [fontname="monospace", fontsize=11];',
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="monospace", fontsize=10];',
        '  edge [fontname="monospace", fontsize=8, color="#555555"];',
    ]
    for k, v in enumerate(w.inputs):
        label = f"{v!r}: {aval_str(v.shape, v.dtype)}\ninput {k}"
        lines.append(f"  {v!r} [label={_q(label)}, shape=ellipse, fillcolor={_q(_INPUT_COLOR)}];")
    for c in w.consts:
        label = f"{c!r}: {aval_str(c.shape, c.dtype)}\nconstant"
        lines.append(f'  {c!r} [label={_q(label)}, shape=box, style="filled,dashed", fillcolor={_q(_CONST_COLOR)}];')
    by_depth: dict[int, list[str]] = {}
    edges: list[str] = []
    for eq in w.eqns:
        args = ", ".join(_atom_str(a) for a in eq.ins)
        label = f"{eq.out!r} = {eq.prim.name}({_short(args)})\n{aval_str(eq.out.shape, eq.out.dtype)}"
        params = _params_str(eq)
        if params:
            label += "\n" + _short(params)
        d = w.sweep_depth(eq)
        fill = _sweep_color(d) or "white"
        by_depth.setdefault(d, []).append(f"{eq.out!r} [label={_q(label)}, fillcolor={_q(fill)}];")
        nvars = sum(1 for a in eq.ins if isinstance(a, Var))
        for pos, a in enumerate(eq.ins):
            if isinstance(a, Var):
                attr = f" [label={_q(str(pos))}]" if nvars > 1 else ""
                edges.append(f"  {a!r} -> {eq.out!r}{attr};")
    for d in sorted(by_depth):
        if d == 0:
            lines.extend("  " + n for n in by_depth[d])
            continue
        lines.append(f"  subgraph cluster_sweep_{d} {{")
        lines.append(f"    label={_q(sweep_label(d, max_depth))}; style=filled; color={_q(_sweep_color(d))};")
        lines.extend("    " + n for n in by_depth[d])
        lines.append("  }")
    lines.extend(edges)
    for k, g in enumerate(w.guards):
        gid = f"guard{k}"
        lines.append(f"  {gid} [label={_q(str(g))}, shape=diamond, fillcolor={_q(_GUARD_COLOR)}];")
        lines.append(f"  {g.var!r} -> {gid} [style=dashed];")
    for k, a in enumerate(w.outputs):
        oid = f"out{k}"
        if isinstance(a, (Var, Const)):
            lines.append(f"  {oid} [label={_q(f'output {k}')}, shape=plaintext, style=solid];")
            lines.append(f"  {a!r} -> {oid} [penwidth=2];")
        else:
            text = f"output {k} = {a!r}" if isinstance(a, Lit) else f"output {k}: not an array"
            lines.append(f"  {oid} [label={_q(text)}, shape=plaintext, style=solid];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- rendering ----------------------------------------------------------------------------------------
class GraphvizNotFoundError(GradjitError, RuntimeError):
    """Rendering a graph needs Graphviz's ``dot`` program, and it is not on ``PATH``."""


_INSTALL = (
    "Install Graphviz: `apt install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS), "
    "`conda install -c conda-forge graphviz`, or https://graphviz.org/download/. "
    "Meanwhile w.to_dot() gives the DOT source and w (in a notebook) shows the table."
)


class RenderedGraph:
    """The output of ``dot``: shown inline by Jupyter (SVG or PNG), or saved with ``save(path)``."""

    def __init__(self, data: bytes, format: str, source: str):
        self.data = data
        self.format = format
        self.source = source

    def _repr_svg_(self) -> str | None:
        return self.data.decode() if self.format == "svg" else None

    def _repr_png_(self) -> bytes | None:
        return self.data if self.format == "png" else None

    def save(self, path: str | os.PathLike) -> str:
        with open(path, "wb") as fh:
            fh.write(self.data)
        return os.fspath(path)

    def __repr__(self) -> str:
        return f"<RenderedGraph {self.format}, {len(self.data)} bytes>"


def render(w: Wengert, path: str | os.PathLike | None = None, format: str = "svg", timeout: float = 60.0) -> Any:
    """Draw ``w`` with Graphviz's ``dot``: a ``RenderedGraph`` (inline in a notebook), also saved to ``path``.

    ``format`` is any ``dot -T`` format (``svg``, ``png``, ``pdf``). Raises ``GraphvizNotFoundError``
    when ``dot`` is not installed.
    """
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFoundError("render", "Graphviz's `dot` program is not installed (not found on PATH)", _INSTALL)
    source = to_dot(w)
    proc = subprocess.run([exe, f"-T{format}"], input=source.encode(), capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"dot -T{format} failed: {proc.stderr.decode(errors='replace').strip()}")
    graph = RenderedGraph(proc.stdout, format, source)
    if path is not None:
        graph.save(path)
    return graph
