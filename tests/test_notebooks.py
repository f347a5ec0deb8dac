"""The notebooks in ``notebooks/`` run clean, top to bottom, and show the numbers they promise.

Each notebook is executed with nbclient in a fresh kernel on the Python running the tests (a kernel
spec named ``python3`` written to a temporary ``JUPYTER_PATH`` that points at ``sys.executable``, so a
user-level ``python3`` kernel for some other interpreter cannot be picked up). The notebook is read from a
temporary copy and executed in memory; nothing is written back, so the repository keeps its stripped
outputs (checked separately, without Jupyter). A cell error fails the test with the cell's traceback;
then the test checks key outputs: the talk's values, test accuracies >= 95%, gradient checks that passed,
plots that were drawn.

The execution tests are skipped, with the reason, when nbclient, nbformat, ipykernel or matplotlib is
missing; the ``test`` extra installs them, so in CI they run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ["01_talk_examples.ipynb", "02_neural_net_three_ways.ipynb", "03_higher_order.ipynb"]
CELL_TIMEOUT_S = 300  # generous: CI has 2 shared cores; the slowest cell takes a few seconds locally

_missing = []
for _module in ("nbclient", "nbformat", "ipykernel", "matplotlib"):
    try:
        __import__(_module)
    except ImportError:
        _missing.append(_module)
needs_jupyter = pytest.mark.skipif(
    bool(_missing),
    reason=f"executing notebooks needs {', '.join(_missing)}: pip install -e '.[test]'",
)


# --------------------------------------------------------------------------- the committed files


def test_the_notebooks_are_there() -> None:
    present = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert present == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    """Outputs are stripped in the repository: no outputs, no execution counts, python3 kernel."""
    nb = json.loads((NOTEBOOK_DIR / name).read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code_cells, "a notebook without code"
    for i, cell in enumerate(code_cells):
        source = "".join(cell["source"])
        assert cell["outputs"] == [], f"code cell {i} has committed outputs: {source[:60]!r}"
        assert cell["execution_count"] is None, f"code cell {i} has an execution count: {source[:60]!r}"
    for cell in nb["cells"]:
        assert "attachments" not in cell or not cell["attachments"], "a cell carries attachments"


# --------------------------------------------------------------------------- executing them


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A ``python3`` kernel spec for this interpreter, first on ``JUPYTER_PATH`` for this module's tests."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (gradjit tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root) + os.pathsep + os.environ.get("JUPYTER_PATH", ""))
        mp.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiets a debugger warning in the kernel's stderr
        # Single-threaded BLAS in the kernel: the notebooks' matrices are small, and a multi-threaded
        # OpenBLAS on a busy 2-core machine made the digits notebook 5x slower (40 s instead of 7 s).
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            mp.setenv(var, "1")
        yield


class Executed:
    """An executed notebook: its cells' text output, stderr, and how many images and tables it displayed."""

    def __init__(self, nb: dict):
        self.text = ""
        self.stderr = ""
        self.images = 0
        self.html_tables = 0
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                if out["output_type"] == "stream":
                    if out["name"] == "stderr":
                        self.stderr += out["text"]
                    else:
                        self.text += out["text"]
                elif out["output_type"] in ("execute_result", "display_data"):
                    self.text += out["data"].get("text/plain", "") + "\n"
                    self.images += "image/png" in out["data"]
                    self.html_tables += "<table" in out["data"].get("text/html", "")

    def numbers_after(self, label: str) -> list[float]:
        """Every number printed right after ``label`` (a literal prefix)."""
        pattern = re.escape(label) + r"\s*([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)"
        return [float(m) for m in re.findall(pattern, self.text)]


def execute(path: Path, workdir: Path) -> Executed:
    """Run a copy of the notebook at ``path`` in ``workdir``; raise on the first cell error."""
    import nbclient
    import nbformat

    copy = workdir / path.name
    shutil.copyfile(path, copy)
    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError (with the cell's traceback) on an error
    return Executed(nb)


_cache: dict[str, Executed] = {}


@pytest.fixture
def run_notebook(kernel_env: None, tmp_path_factory: pytest.TempPathFactory):
    def run(name: str) -> Executed:
        if name not in _cache:  # each notebook runs once per session, however many tests read it
            _cache[name] = execute(NOTEBOOK_DIR / name, tmp_path_factory.mktemp(name.split("_")[0]))
        return _cache[name]

    return run


@needs_jupyter
def test_executor_reports_a_failing_cell(kernel_env: None, tmp_path: Path) -> None:
    """The harness itself: a notebook with an error fails, naming the error."""
    import nbclient
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("1 / 0")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    (tmp_path / "run").mkdir()
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="ZeroDivisionError"):
        execute(path, tmp_path / "run")


@needs_jupyter
def test_notebook_01_talk_examples(run_notebook) -> None:
    out = run_notebook("01_talk_examples.ipynb")
    assert "f(3.5, 2.1, 1.1) = 5.81    df/da = 1\n" in out.text
    assert "f(3.5, 2.1, 1.1) = 3.0212327832711    df/da = 0.86320936664887\n" in out.text
    assert "f_loop: f(3, 2) = 81.0, df/da = 108.0" in out.text
    assert "f_rec: f(3, 2) = 81.0, df/da = 108.0" in out.text
    assert "same Wengert list for the loop and the recursion: True" in out.text
    assert "guard bool(v3) == True" in out.text  # the `if` is recorded
    assert "-- reverse sweep of grad --" in out.text  # the gradient's own list: forward, then reverse
    assert out.html_tables >= 1, "the Wengert list did not display itself as a table"
    assert 'digraph "wengert" {' in out.text
    assert "check_grads passed" in out.text
    # floor: the zero gradient, then the straight-through one (3 a^2 at a = eye(3)).
    assert "[[0. 0. 0.]\n [0. 0. 0.]\n [0. 0. 0.]]" in out.text
    assert "[[3. 0. 0.]\n [0. 3. 0.]\n [0. 0. 3.]]" in out.text
    assert "RuntimeWarning" not in out.stderr, out.stderr


@needs_jupyter
def test_notebook_02_neural_net_three_ways(run_notebook) -> None:
    out = run_notebook("02_neural_net_three_ways.ipynb")
    accuracies = dict(re.findall(r"test accuracy \(([^)]+)\): (\d+\.\d+)%", out.text))
    assert "granular NumPy" in accuracies, out.text
    assert len(accuracies) >= 3, f"expected the three ways, got {sorted(accuracies)}"
    for way, acc in accuracies.items():
        assert float(acc) >= 95.0, f"{way}: test accuracy {acc}% < 95%"
    assert "gradient check passed" in out.text
    assert out.images >= 1, "no loss curves were plotted"
    assert "RuntimeWarning" not in out.stderr, out.stderr


@needs_jupyter
def test_notebook_03_higher_order(run_notebook) -> None:
    out = run_notebook("03_higher_order.ipynb")
    errors = out.numbers_after("max |nested grad - closed form| =")
    assert len(errors) == 7 and max(errors) < 1e-9, errors  # tanh and its six derivatives
    assert "d^6 tanh / dx^6 (0.5) = -36.27954029" in out.text
    (hvp_err,) = out.numbers_after("HVP vs finite differences of the gradient: max relative error")
    assert hvp_err < 1e-6
    assert "Hessian symmetric: True   H @ v == hvp: True" in out.text
    (hyper_err,) = out.numbers_after("hypergradient vs finite differences: relative error")
    assert hyper_err < 1e-5
    losses = out.numbers_after("validation loss")
    assert losses[-1] < 0.05 * losses[0]  # hypergradient descent on the learning rate helped
    assert out.images >= 3, "the three plots were not drawn"
    assert "RuntimeWarning" not in out.stderr, out.stderr
