"""The Wengert list in a notebook: the HTML table, DOT source, rendering, and reverse-sweep markers.

The HTML is parsed back (``html.parser``) and the DOT source read with a small regex reader, so
these tests check structure without a browser or Graphviz; where the ``dot`` program is installed
the DOT source is also validated by it and rendered.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

import gradjit as gj
from gradjit import display
from gradjit.wengert import Eqn, Var, Wengert, aval_str

W = np.arange(6.0).reshape(2, 3) / 10.0
HAS_DOT = shutil.which("dot") is not None


def f_branch(a, b, c):
    if b > c:
        return a * np.sin(b)
    return a + b * c


def f_layer(x):
    h = np.tanh(W @ x + 1.0)
    return np.sum(h**2)


class _Table(HTMLParser):
    """Rows of the first table: a list of (class, [cell texts])."""

    def __init__(self, text: str):
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append((dict(attrs).get("class", ""), []))
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


# ---------------------------------------------------------------------------------------------
# Reverse sweeps, in str()
# ---------------------------------------------------------------------------------------------
def test_forward_list_prints_no_sweep_markers() -> None:
    wl = gj.make_wengert(f_branch)(3.5, 2.1, 1.1)
    assert "--" not in str(wl)
    assert wl.level == 1 and wl.max_sweep_depth() == 0


def test_make_wengert_of_grad_marks_the_reverse_sweep() -> None:
    # value_and_grad: the loss is an output, so its forward pass is not dead code.
    wl = gj.make_wengert(gj.value_and_grad(f_layer))(np.ones(3))
    lines = str(wl).splitlines()
    print("\n".join(lines))
    k = lines.index("  -- reverse sweep of grad --")
    before = [line.split(" = ")[1].split()[0] for line in lines[1:k] if " = " in line]
    assert before == ["matmul", "add", "tanh", "pow", "reduce_sum"]  # the forward pass, in order
    assert sum(1 for line in lines if line.startswith("  --")) == 1
    depths = [wl.sweep_depth(e) for e in wl.eqns]
    assert depths == sorted(depths) and depths[0] == 0 and depths[-1] == 1
    assert wl.eqns[-1].prim.name == "matmul"  # W^T g: the last step of the reverse sweep


def test_grad_of_grad_marks_inner_and_outer_sweeps() -> None:
    wl = gj.make_wengert(gj.grad(gj.grad(np.tanh)))(0.3)
    text = str(wl)
    print(text)
    markers = [line.strip() for line in text.splitlines() if line.startswith("  --")]
    assert markers == ["-- reverse sweep of the inner grad --", "-- reverse sweep of the outer grad --"]
    assert [wl.sweep_depth(e) for e in wl.eqns][:2] == [0, 2]
    assert wl.max_sweep_depth() == 2


def test_third_order_numbers_the_sweeps_and_forward_code_after_a_sweep_is_marked() -> None:
    wl = gj.make_wengert(gj.grad(gj.grad(gj.grad(np.sin))))(0.3)
    assert "-- reverse sweep of grad #3 (#1 is the outermost) --" in str(wl)
    # grad used inside the traced function: its reverse sweep, then forward code again.
    wl = gj.make_wengert(lambda x: gj.grad(np.sin)(x) * x)(0.3)
    lines = str(wl).splitlines()
    assert lines.index("  -- reverse sweep of grad --") < lines.index("  -- forward --")
    # (sin x is dead code: only grad's cos x is used; the seed's multiplication by one is simplified away)
    assert lines[-3:] == ["  -- forward --", "  v4:f64[] = mul v2 v0", "outputs: v4"]


def test_sweep_phase_is_an_annotation_not_structure() -> None:
    wl = gj.make_wengert(gj.grad(f_layer))(np.ones(3))
    flat = Wengert(
        wl.inputs,
        wl.consts,
        [Eqn(e.prim, e.ins, e.out, e.params) for e in wl.eqns],  # phase 0 everywhere
        wl.outputs,
        wl.guards,
        level=wl.level,
    )
    assert flat.max_sweep_depth() == 0 and "--" not in str(flat)
    assert flat == wl and hash(flat) == hash(wl) and flat.structural_hash() == wl.structural_hash()


def test_vjp_and_elementwise_grad_sweeps_are_marked() -> None:
    wl = gj.make_wengert(lambda x: gj.vjp(np.sin, x)[1](np.ones(3))[0])(np.ones(3))
    assert "  -- reverse sweep of grad --" in str(wl)
    wl = gj.make_wengert(gj.elementwise_grad(np.tanh))(np.ones(3))
    assert wl.max_sweep_depth() == 1


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------
def test_html_has_every_equation_with_its_type_and_the_guard() -> None:
    wl = gj.make_wengert(gj.grad(f_branch, argnums=(0, 1)))(3.0, 2.0, 1.0)
    text = wl._repr_html_()
    table = _Table(text)
    eqn_rows = [cells for cls, cells in table.rows if cls == "gj-eqn"]
    assert len(eqn_rows) == len(wl.eqns)
    for cells, e in zip(eqn_rows, wl.eqns):
        assert cells[1:5] == [repr(e.out), aval_str(e.out.shape, e.out.dtype), e.prim.name, " ".join(map(repr, e.ins))]
    inputs = [cells for cls, cells in table.rows if cls == "gj-input"]
    assert [c[1:4] for c in inputs] == [
        ["v0", "f64[]", "input 0"],
        ["v1", "f64[]", "input 1"],
        ["v2", "f64[]", "input 2"],
    ]
    guards = [cells[0] for cls, cells in table.rows if cls == "gj-guard"]
    assert guards == ["guard bool(v3) == True"]
    sweeps = [cells[0] for cls, cells in table.rows if cls == "gj-sweep"]
    assert sweeps == ["\u2014 reverse sweep of grad \u2014"]
    assert table.rows[-1][1][0] == "outputs: " + " ".join(map(repr, wl.outputs))
    assert "3 inputs" in text and f"{len(wl.eqns)} equations" in text and "1 guard" in text


def test_html_shows_array_shapes_params_and_constants() -> None:
    wl = gj.make_wengert(f_layer)(np.ones(3))
    table = _Table(wl.to_html())
    cells = {c[1]: c for cls, c in table.rows if cls in ("gj-eqn", "gj-const")}
    assert cells["c1"][2:4] == ["f64[2,3]", "constant"]
    assert cells["v2"][2:5] == ["f64[2]", "matmul", "c1 v0"]
    assert cells["v3"][4] == "v2 1.0"  # a literal inline
    assert cells["v6"][3] == "reduce_sum" and "axis=" in cells["v6"][5]


def test_html_escapes_names_and_truncates_long_lists() -> None:
    ident = gj.primitive(lambda x: x)  # a primitive named "<lambda>"
    ident.defvjp(lambda g, ans, x: g)
    wl = gj.make_wengert(lambda x: ident(x) * 2.0)(1.0)
    text = wl._repr_html_()
    assert "&lt;lambda&gt;" in text and "<lambda>" not in text

    def long(x):
        for _ in range(30):
            x = np.sin(x)
        return x

    wl = gj.make_wengert(long)(0.5)
    table = _Table(wl.to_html(max_rows=10))
    assert sum(1 for cls, c in table.rows if cls == "gj-eqn") == 10
    assert any("20 more equations" in c[0] for cls, c in table.rows if cls == "gj-note")
    assert len(_Table(wl.to_html(max_rows=None)).rows) == 1 + 1 + 30 + 1  # header, input, eqns, outputs


# ---------------------------------------------------------------------------------------------
# DOT
# ---------------------------------------------------------------------------------------------
_NODE = re.compile(r"^\s*(\w+) \[label=\"((?:[^\"\\]|\\.)*)\"")
_EDGE = re.compile(r"^\s*(\w+) -> (\w+)")


def read_dot(src: str) -> tuple[dict[str, str], list[tuple[str, str]], list[str]]:
    """Nodes (id -> label), edges and cluster names of DOT source written by ``to_dot``."""
    nodes = {m.group(1): m.group(2) for m in map(_NODE.match, src.splitlines()) if m}
    edges = [(m.group(1), m.group(2)) for m in map(_EDGE.match, src.splitlines()) if m]
    clusters = re.findall(r"subgraph (cluster_\w+) \{", src)
    return nodes, edges, clusters


def test_dot_has_a_node_per_variable_and_an_edge_per_use() -> None:
    wl = gj.make_wengert(gj.grad(f_branch, argnums=(0, 1)))(3.0, 2.0, 1.0)
    src = wl.to_dot()
    assert src.startswith('digraph "wengert" {') and src.rstrip().endswith("}")
    assert src.count("{") == src.count("}")
    nodes, edges, clusters = read_dot(src)
    for v in [*wl.inputs, *wl.consts]:
        assert nodes[repr(v)].startswith(f"{v!r}: {aval_str(v.shape, v.dtype)}")
    for e in wl.eqns:
        assert nodes[repr(e.out)].startswith(f"{e.out!r} = {e.prim.name}(")
    expected = [(repr(a), repr(e.out)) for e in wl.eqns for a in e.ins if isinstance(a, Var)]
    expected += [("v3", "guard0")] + [(repr(a), f"out{k}") for k, a in enumerate(wl.outputs) if isinstance(a, Var)]
    assert sorted(edges) == sorted(expected)
    assert clusters == ["cluster_sweep_1"] and 'label="reverse sweep of grad"' in src
    assert nodes["guard0"] == "guard bool(v3) == True"


def test_dot_nested_sweeps_are_separate_clusters_and_labels_are_escaped() -> None:
    wl = gj.make_wengert(gj.grad(gj.grad(np.tanh)))(0.3)
    _, _, clusters = read_dot(wl.to_dot())
    assert clusters == ["cluster_sweep_1", "cluster_sweep_2"]
    assert display._q('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")
def test_dot_source_is_valid_for_graphviz_and_renders() -> None:
    ident = gj.primitive(lambda x: x)
    ident.__name__ = 'quote"d'
    ident.defvjp(lambda g, ans, x: g)
    for wl in (
        gj.make_wengert(gj.grad(f_branch, argnums=(0, 1)))(3.0, 2.0, 1.0),
        gj.make_wengert(gj.grad(gj.grad(lambda x: np.sum(np.tanh(ident(x))))))(0.5),
    ):
        proc = subprocess.run(["dot", "-Tcanon"], input=wl.to_dot(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert not proc.stderr
    graph = wl.render()
    svg = graph._repr_svg_()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "reverse sweep of the inner grad" in svg
    assert graph._repr_png_() is None


def test_render_without_graphviz_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(display.shutil, "which", lambda name: None)
    wl = gj.make_wengert(f_branch)(3.5, 2.1, 1.1)
    with pytest.raises(display.GraphvizNotFoundError, match="dot` program is not installed") as e:
        wl.render()
    assert "apt install graphviz" in str(e.value) and "to_dot()" in str(e.value)
