"""``minimize``: the training loop over a gradjit optimizer, with progress and a NaN/Inf stop.

Split from ``optim`` (the optimizers themselves) so each module reads in one sitting; ``optim``
re-exports everything here, so ``gj.optim.minimize`` is the public name.

Invariants
----------
- Each step computes ``value_and_grad(loss)(params, *batch)`` and one ``optimizer.update``; the loss
  history is recorded as float64.
- The loss, every gradient leaf and every updated leaf are checked; the first non-finite one stops
  the run with ``NonFiniteStepError`` naming the step and the leaf's path, carrying the last good params.
- The progress bar (tqdm) shows only when interactive (a notebook kernel or a terminal) and never
  when the ``CI`` environment variable is set, unless ``progress=True``/``False`` says otherwise.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .api import value_and_grad
from .debug import NonFiniteError
from .pytree import TreeDef, flatten, is_float_leaf

if TYPE_CHECKING:
    from .optim import Optimizer

__all__ = ["minimize", "MinimizeResult", "NonFiniteStepError"]


class NonFiniteStepError(NonFiniteError):
    """``minimize`` met a NaN or Inf: in the loss, in a gradient leaf, or in the updated params.

    A ``gradjit.NonFiniteError`` (the error of ``gradjit.debug_nans``), so one ``except`` catches
    both; ``eqn`` and ``origin`` are None here, ``sweep`` is ``"forward"`` for the loss, ``"reverse"``
    for a gradient and ``"update"`` for the optimizer's step.

    Attributes: ``step`` (0-based, the index the loss would have had in the history), ``source``
    (``"loss"``, ``"gradient"`` or ``"update"``), ``path`` (the leaf, e.g. ``"params['W1']"``; ``None``
    for the loss), ``value`` (the loss at that step), ``params`` (the last params at which the loss
    and every gradient leaf were finite; ``None`` if the first evaluation already failed), ``state``
    (the optimizer state that goes with ``params``; pass both back to ``minimize`` to resume),
    ``failed_params`` (the params at which it failed, or the non-finite update), ``history`` (the
    finite losses before ``step``).
    """

    def __init__(self, step: int, source: str, path: str | None, value: float, leaf: Any, **found: Any):
        at = f"at step {step} (counting from 0)"
        if source == "loss":
            problem = f"the loss became {value} {at}"
        else:
            what = f"the gradient of {path} became" if source == "gradient" else f"the optimizer's update made {path}"
            problem = f"{what} non-finite {at}: {_describe(leaf)}; the loss was {value:.6g}"
        history = found["history"]
        if len(history):
            problem += f"; the last finite loss was {history[-1]:.6g}"
        before = " (the params before this update)" if source == "update" else ""
        advice = (
            f"err.params holds the last params whose loss and gradient were finite{before}, err.state their "
            "optimizer state. Try a smaller learning rate, gradient clipping, or a numerically stable loss "
            "(log-sum-exp, log1p); run the loss under gradjit.debug_nans() to find the operation that made it."
        )
        sweep = {"loss": "forward", "gradient": "reverse"}.get(source, source)
        super().__init__("minimize", problem, advice, where=None, sweep=sweep)
        self.step, self.source, self.path, self.value = step, source, path, value
        self.params, self.state = found["params"], found["state"]
        self.failed_params, self.history = found["failed_params"], history


def _describe(leaf: Any) -> str:
    a = np.asarray(leaf)
    n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    parts = [f"{n} {kind}" for n, kind in ((n_nan, "NaN"), (n_inf, "Inf")) if n]
    return f"{' and '.join(parts)} of {a.size} entr{'y' if a.size == 1 else 'ies'}"


def _leaf_paths(td: TreeDef, prefix: str) -> list[str]:
    """The path of every leaf in flatten order: ``params['W1']``, ``params[0]``, ``params.b``."""
    if td.kind == "leaf":
        return [prefix]
    if td.kind == "dict":
        names = [f"{prefix}[{k!r}]" for k in td.meta[1]]
    elif td.kind == "namedtuple":
        names = [f"{prefix}.{f}" for f in td.meta._fields]
    else:
        names = [f"{prefix}[{i}]" for i in range(len(td.children))]
    out: list[str] = []
    for child, name in zip(td.children, names):
        out += _leaf_paths(child, name)
    return out


def _first_nonfinite(tree: Any) -> tuple[str, Any] | None:
    """``(path, leaf)`` of the first float leaf holding a NaN or Inf, in flatten order."""
    leaves, td = flatten(tree)
    for i, leaf in enumerate(leaves):
        if leaf is None or not is_float_leaf(leaf):
            continue
        ok = math.isfinite(leaf) if type(leaf) is float else bool(np.isfinite(leaf).all())
        if not ok:
            return _leaf_paths(td, "params")[i], leaf
    return None


class MinimizeResult:
    """What ``minimize`` returns: ``.params``, ``.history`` (float64 losses, one per step done),
    ``.state`` (the optimizer state, to continue with ``minimize(..., state=result.state)``) and
    ``.steps``. It unpacks as a pair: ``params, history = minimize(...)``.
    """

    __slots__ = ("params", "history", "state", "steps")

    def __init__(self, params: Any, history: np.ndarray, state: Any, steps: int):
        self.params, self.history, self.state, self.steps = params, history, state, steps

    def __iter__(self) -> Iterator[Any]:
        return iter((self.params, self.history))

    def __repr__(self) -> str:
        last = f", final loss {self.history[-1]:.6g}" if len(self.history) else ""
        return f"MinimizeResult({self.steps} steps{last})"


_END = object()


def _as_args(batch: Any) -> tuple:
    return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


def _batches(data: Any) -> Iterator[tuple]:
    """One tuple of extra ``loss`` arguments per step (see ``minimize`` for what ``data`` can be)."""
    if data is None or isinstance(data, (tuple, np.ndarray, dict, float, int, np.generic)):
        args = () if data is None else _as_args(data)
        while True:
            yield args
    if callable(data):
        step = 0
        while True:
            yield _as_args(data(step))
            step += 1
    it = iter(data)
    reiterable = it is not data  # a container: start it again when it runs out (the next epoch)
    while True:
        empty = True
        for batch in it:
            empty = False
            yield _as_args(batch)
        if empty or not reiterable:
            return
        it = iter(data)


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too old or half-imported: not a notebook we can draw in
        return False
    return type(shell).__name__ == "ZMQInteractiveShell"


def _interactive() -> bool:
    """Whether a progress bar would be seen: a notebook kernel or a terminal on stderr, not in CI."""
    if _ci():
        return False
    if _in_notebook():
        return True
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def _progress_bar(steps: int, progress: bool | None, desc: str) -> Any:
    if not (_interactive() if progress is None else progress):
        return None
    try:
        if _in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.notebook import tqdm
        else:
            from tqdm import tqdm
    except ImportError:
        if progress:
            warnings.warn("minimize: progress=True but tqdm is not installed (pip install tqdm)", stacklevel=3)
        return None
    return tqdm(total=steps, desc=desc, file=sys.stderr, dynamic_ncols=True)


def minimize(
    loss: Callable[..., Any],
    params: Any,
    data: Any,
    optimizer: Optimizer,
    steps: int = 1000,
    *,
    state: Any = None,
    progress: bool | None = None,
    callback: Callable[[int, Any, float], Any] | None = None,
    desc: str = "minimize",
) -> MinimizeResult:
    """Minimize ``loss(params, *batch)`` over ``steps`` optimizer updates; returns a ``MinimizeResult``.

    Each step takes the next batch from ``data``, computes ``gradjit.value_and_grad(loss)(params,
    *batch)``, checks the loss and every gradient leaf for NaN/Inf, calls ``optimizer.update`` and
    checks the new params. ``data`` can be:

    - ``None``: ``loss(params)`` with no further arguments;
    - a ``tuple``: one batch, passed whole at every step as ``loss(params, *data)`` (full batch);
      a single array (or dict, or number) is passed the same way, as ``loss(params, data)``;
    - a callable: ``data(step)`` returns the batch of that step (``step`` from 0);
    - any other iterable (a list of batches, a generator, a data loader): one batch per step; a
      container is iterated again when it runs out (epochs), a one-shot iterator that runs out ends
      the run early with a warning.

    A batch that is a ``tuple`` or ``list`` is unpacked into ``loss``'s arguments; anything else is
    passed as one argument. ``state`` resumes from an earlier optimizer state (``result.state`` or
    ``err.state``). ``progress``: ``True``/``False`` force the tqdm bar (with the current loss) on or
    off; ``None`` (default) shows it only in a notebook or when stderr is a terminal, and never when
    the ``CI`` environment variable is set. ``callback(step, params, loss)`` runs after each update;
    returning a true value stops the run.

    Raises ``NonFiniteStepError`` (a ``gradjit.NonFiniteError``) at the first NaN/Inf in the loss, a
    gradient leaf (named by its path, e.g. ``params['W1']``) or the updated params; the error carries
    the last good params. Under ``gradjit.debug_nans()`` the operation that made the NaN raises first.
    """
    vg = value_and_grad(loss)
    state = optimizer.init(params) if state is None else state
    history: list[float] = []
    batches = _batches(data)
    good_params = good_state = None
    bar = _progress_bar(steps, progress, desc)

    def fail(step: int, source: str, path: str | None, value: float, leaf: Any, failed: Any) -> NonFiniteStepError:
        return NonFiniteStepError(
            step, source, path, value, leaf,
            params=good_params, state=good_state, failed_params=failed, history=np.array(history),
        )  # fmt: skip

    done = 0
    try:
        for step in range(steps):
            batch = next(batches, _END)
            if batch is _END:
                warnings.warn(
                    f"minimize: data ran out after {step} of {steps} steps; pass a re-iterable container, "
                    "a callable data(step), or fewer steps",
                    stacklevel=2,
                )
                break
            value, grads = vg(params, *batch)
            v = float(value)
            if not math.isfinite(v):
                raise fail(step, "loss", None, v, None, params)
            bad = _first_nonfinite(grads)
            if bad is not None:
                raise fail(step, "gradient", bad[0], v, bad[1], params)
            good_params, good_state = params, state
            if optimizer.wants_loss:
                new_params, new_state = optimizer.update(
                    grads, state, params, value=v, loss_fn=lambda p, b=batch: loss(p, *b)
                )
            else:
                new_params, new_state = optimizer.update(grads, state, params)
            bad = _first_nonfinite(new_params)
            if bad is not None:
                raise fail(step, "update", bad[0], v, bad[1], new_params)
            params, state = new_params, new_state
            history.append(v)
            done = step + 1
            if bar is not None:
                bar.set_postfix(loss=f"{v:.4g}", refresh=False)
                bar.update(1)
            if callback is not None and callback(step, params, v):
                break
    finally:
        if bar is not None:
            bar.close()
    return MinimizeResult(params, np.array(history, dtype=np.float64), state, done)
