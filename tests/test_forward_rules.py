"""Forward mode, primitive by primitive, on the shared table (``tests/primitive_table.py``).

The table itself is checked first: it covers every primitive, and each row traces the primitives it
claims.
"""

from __future__ import annotations

import numpy as np
import pytest
from primitive_table import NO_TANGENT, ROWS, Row, covered

import gradjit as gj
from gradjit.primitives import PRIMITIVES


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
def test_the_table_covers_every_primitive() -> None:
    assert covered() == set(PRIMITIVES), (
        f"no row for {sorted(set(PRIMITIVES) - covered())}; unknown names {sorted(covered() - set(PRIMITIVES))}"
    )
    assert NO_TANGENT <= set(PRIMITIVES)


@pytest.mark.parametrize("r", ROWS, ids=lambda r: r.id)
def test_row_traces_its_primitives_and_returns_floats(r: Row) -> None:
    args = r.make_args(np.random.default_rng(0), np.float64)
    expected = r.fn(*args)
    assert np.result_type(expected).kind == "f"
    traced = {e.prim.name for e in gj.make_wengert(r.fn)(*args).eqns}
    assert r.prims <= traced, f"{r.id}: claims {sorted(r.prims - traced)} but traces {sorted(traced)}"
