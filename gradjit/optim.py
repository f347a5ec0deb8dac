"""Functional optimizers over pytrees, learning-rate schedules, and the ``minimize`` training loop.

An optimizer is an ``Optimizer``: a named pair of pure functions::

    opt = gj.optim.adam(1e-3)
    state = opt.init(params)                                  # a pytree
    params, state = opt.update(grads, state, params)          # new params, new state

``minimize(loss, params, data, optimizer, steps)`` runs that loop with ``gradjit.value_and_grad``,
records the loss history, shows a tqdm progress bar when interactive, and stops on the first NaN/Inf
with a ``NonFiniteStepError`` that says where it appeared and carries the last good params.

Invariants
----------
- Nothing is mutated: ``update`` builds new leaves and a new state; its arguments are left as they were.
- ``params``, ``grads`` and states are pytrees (``gradjit.pytree``); ``grads`` has the structure of
  ``params``. Only floating-point leaves with a gradient are updated: a ``None`` gradient (what
  ``value_and_grad`` gives for integer leaves) leaves that leaf and its state untouched.
- Types are preserved: a float32 leaf stays float32 (float64 scalars such as a schedule's value are
  not allowed to promote it), a Python ``float`` stays a ``float``, a NumPy scalar stays one.
- The first-order updates (sgd, adam, adamw, rmsprop, adagrad) are plain NumPy arithmetic and
  ``np.sqrt``, so they also run on traced values: differentiating through unrolled optimizer steps
  (a hypergradient with respect to the learning rate) works. ``lbfgs`` works on concrete values only.
- ``lr`` is a number or a schedule ``lr(step) -> float``, where ``step`` counts the updates done
  before this one (0 for the first update), as in Optax.
- The update formulas are PyTorch's ``torch.optim`` definitions (each docstring writes its formula);
  where Optax defines the same optimizer identically, it says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .placement import full
from .pytree import TreeDef, flatten, is_float_leaf, like_leaf, unflatten
from .tracing import Tracer

__all__ = [
    "Optimizer", "sgd", "adam", "adamw", "rmsprop", "adagrad", "lbfgs",
    "SGDState", "AdamState", "RMSpropState", "AdagradState", "LBFGSState",
    "exponential_decay", "cosine_decay", "linear_warmup",
    "minimize", "MinimizeResult", "NonFiniteStepError",
]  # fmt: skip

Schedule = Callable[[int], float]
LearningRate = float | Schedule


class Optimizer(NamedTuple):
    """``init(params) -> state`` and ``update(grads, state, params, *, value=None, loss_fn=None)``.

    ``update`` returns ``(new_params, new_state)``. ``value`` (the loss at ``params``) and ``loss_fn``
    (``loss_fn(params) -> float`` on the current batch) are used only by optimizers with
    ``wants_loss`` set (``lbfgs``'s line search); the others accept and ignore them, so every
    optimizer can be called the same way. A user-made ``Optimizer(init, update)`` whose ``update``
    takes just ``(grads, state, params)`` works with ``minimize`` as long as ``wants_loss`` is False.
    """

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]
    name: str = "optimizer"
    hyper: tuple = ()  # (name, value) pairs, for the repr
    wants_loss: bool = False

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.hyper)})"


class SGDState(NamedTuple):
    count: int
    momentum: Any  # params-shaped tree, or None without momentum


class AdamState(NamedTuple):
    count: int
    mu: Any  # first moment (exp_avg)
    nu: Any  # second moment (exp_avg_sq)


class RMSpropState(NamedTuple):
    count: int
    square_avg: Any
    grad_avg: Any  # None unless centered
    momentum: Any  # None unless momentum > 0


class AdagradState(NamedTuple):
    count: int
    sum: Any


class LBFGSState(NamedTuple):
    count: int
    s: tuple  # recent steps x[k+1] - x[k] (float64 vectors over the float leaves), oldest first
    y: tuple  # the matching gradient differences
    x_prev: Any  # the flat params of the last update (None after a reset)
    g_prev: Any  # the flat gradient of the last update


# ---------------------------------------------------------------------------------------------------
# leaves


def _filled(p: Any, value: float) -> Any:
    """A leaf like ``p`` (type, shape, dtype) filled with ``value``; ``None`` for non-float leaves."""
    if not is_float_leaf(p):
        return None
    if type(p) is float:
        return float(value)
    if isinstance(p, np.generic):
        return p.dtype.type(value)
    return full(p.shape, value, p.dtype, like=p)  # arrays and tracers: a concrete array, where p lives


def _filled_tree(params: Any, value: float) -> Any:
    leaves, td = flatten(params)
    return unflatten(td, [_filled(p, value) for p in leaves])


def _lr_at(lr: LearningRate, count: int) -> Any:
    """The learning rate of update number ``count``; a Python float unless it is traced."""
    v = lr(count) if callable(lr) else lr
    return v if isinstance(v, Tracer) else float(v)


def _check_structure(op: str, what: str, td: TreeDef, pd: TreeDef) -> None:
    if td != pd:
        raise ValueError(f"{op}: the {what} has structure {td}, but params have {pd}; pass trees of the same shape")


def _apply(op: str, fn: Callable, params: Any, grads: Any, slots: tuple) -> tuple[Any, tuple]:
    """Run ``fn(p, g, *slot_leaves) -> (new_p, *new_slot_leaves)`` on every float leaf with a gradient.

    ``slots`` are state trees with the structure of ``params``, or ``None`` for a slot the optimizer
    does not use (``fn`` then gets and returns ``None`` for it). New leaves are fitted to ``p``'s
    type and dtype; leaves without a gradient keep their params and slot values.
    """
    pl, pd = flatten(params)
    gl, gd = flatten(grads)
    _check_structure(op, "gradient", gd, pd)
    slot_leaves = []
    for k, s in enumerate(slots):
        if s is None:
            slot_leaves.append(None)
            continue
        sl, sd = flatten(s)
        _check_structure(op, f"state slot {k}", sd, pd)
        slot_leaves.append(sl)
    new_p = list(pl)
    new_s = [None if sl is None else list(sl) for sl in slot_leaves]
    for i, (p, g) in enumerate(zip(pl, gl)):
        if g is None or not is_float_leaf(p):
            continue
        out = fn(p, g, *[None if sl is None else sl[i] for sl in slot_leaves])
        new_p[i] = like_leaf(out[0], p)
        for k, v in enumerate(out[1:]):
            if new_s[k] is not None:
                new_s[k][i] = like_leaf(v, p)
    return unflatten(pd, new_p), tuple(None if s is None else unflatten(pd, s) for s in new_s)


# ---------------------------------------------------------------------------------------------------
# first-order optimizers


def sgd(lr: LearningRate, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> Optimizer:
    """Stochastic gradient descent, PyTorch's ``torch.optim.SGD`` with ``dampening=0``.

    ``g += weight_decay * p``; with momentum ``buf = momentum * buf + g`` (``buf`` starts at 0, so
    the first ``buf`` is ``g``, as in PyTorch), then ``g = g + momentum * buf`` (Nesterov) or
    ``g = buf``; finally ``p -= lr * g``. Optax's ``sgd(lr, momentum, nesterov)`` is the same update.
    """
    if nesterov and momentum <= 0:
        raise ValueError("sgd: nesterov=True needs momentum > 0")

    def init(params: Any) -> SGDState:
        return SGDState(0, _filled_tree(params, 0.0) if momentum else None)

    def update(grads: Any, state: SGDState, params: Any, *, value: Any = None, loss_fn: Any = None) -> tuple:
        lr_t = _lr_at(lr, state.count)

        def leaf(p: Any, g: Any, buf: Any) -> tuple:
            if weight_decay:
                g = g + weight_decay * p
            if momentum:
                buf = momentum * buf + g
                g = g + momentum * buf if nesterov else buf
            return p - lr_t * g, buf

        new_params, (buf,) = _apply("sgd", leaf, params, grads, (state.momentum,))
        return new_params, SGDState(state.count + 1, buf)

    hyper = (("lr", lr), ("momentum", momentum), ("nesterov", nesterov), ("weight_decay", weight_decay))
    return Optimizer(init, update, "sgd", hyper)


def _adam(name: str, lr: LearningRate, b1: float, b2: float, eps: float, wd: float, decoupled: bool) -> Optimizer:
    def init(params: Any) -> AdamState:
        return AdamState(0, _filled_tree(params, 0.0), _filled_tree(params, 0.0))

    def update(grads: Any, state: AdamState, params: Any, *, value: Any = None, loss_fn: Any = None) -> tuple:
        t = state.count + 1
        lr_t = _lr_at(lr, state.count)
        bc1 = 1.0 - b1**t
        sqrt_bc2 = math.sqrt(1.0 - b2**t)
        step_size = lr_t / bc1

        def leaf(p: Any, g: Any, m: Any, v: Any) -> tuple:
            if wd and not decoupled:
                g = g + wd * p
            m = b1 * m + (1.0 - b1) * g
            v = b2 * v + (1.0 - b2) * (g * g)
            if wd and decoupled:
                p = p * (1.0 - lr_t * wd)
            return p - step_size * (m / (np.sqrt(v) / sqrt_bc2 + eps)), m, v

        new_params, (mu, nu) = _apply(name, leaf, params, grads, (state.mu, state.nu))
        return new_params, AdamState(t, mu, nu)

    hyper = (("lr", lr), ("b1", b1), ("b2", b2), ("eps", eps), ("weight_decay", wd))
    return Optimizer(init, update, name, hyper)


def adam(
    lr: LearningRate = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0
) -> Optimizer:
    """Adam, PyTorch's ``torch.optim.Adam`` (``amsgrad=False``); Optax's ``adam`` is the same update.

    ``g += weight_decay * p`` (an L2 term in the gradient, as PyTorch's Adam does; see ``adamw``),
    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, and with ``t`` the 1-based step,
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """
    return _adam("adam", lr, b1, b2, eps, weight_decay, decoupled=False)


def adamw(
    lr: LearningRate = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 1e-2
) -> Optimizer:
    """AdamW, PyTorch's ``torch.optim.AdamW``: Adam with decoupled weight decay.

    ``p *= 1 - lr * weight_decay`` before the Adam step (which sees the raw gradient). Optax's
    ``adamw`` is the same update (its default ``weight_decay`` is 1e-4; PyTorch's, used here, 1e-2).
    """
    return _adam("adamw", lr, b1, b2, eps, weight_decay, decoupled=True)


def rmsprop(
    lr: LearningRate = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
) -> Optimizer:
    """RMSprop, PyTorch's ``torch.optim.RMSprop`` (``eps`` outside the square root).

    ``g += weight_decay * p``, ``v = alpha v + (1 - alpha) g^2``; centered: ``a = alpha a + (1 - alpha) g``
    and ``avg = sqrt(v - a^2) + eps``, else ``avg = sqrt(v) + eps``; with momentum
    ``buf = momentum buf + g / avg`` and ``p -= lr buf``, else ``p -= lr g / avg``. (Optax's
    ``rmsprop`` differs: it puts ``eps`` inside the square root and decays with 0.9 by default.)
    """

    def init(params: Any) -> RMSpropState:
        return RMSpropState(
            0,
            _filled_tree(params, 0.0),
            _filled_tree(params, 0.0) if centered else None,
            _filled_tree(params, 0.0) if momentum else None,
        )

    def update(grads: Any, state: RMSpropState, params: Any, *, value: Any = None, loss_fn: Any = None) -> tuple:
        lr_t = _lr_at(lr, state.count)

        def leaf(p: Any, g: Any, v: Any, a: Any, buf: Any) -> tuple:
            if weight_decay:
                g = g + weight_decay * p
            v = alpha * v + (1.0 - alpha) * (g * g)
            if centered:
                a = alpha * a + (1.0 - alpha) * g
                avg = np.sqrt(v - a * a) + eps
            else:
                avg = np.sqrt(v) + eps
            if momentum:
                buf = momentum * buf + g / avg
                return p - lr_t * buf, v, a, buf
            return p - lr_t * (g / avg), v, a, buf

        slots = (state.square_avg, state.grad_avg, state.momentum)
        new_params, (v, a, buf) = _apply("rmsprop", leaf, params, grads, slots)
        return new_params, RMSpropState(state.count + 1, v, a, buf)

    hyper = (
        ("lr", lr), ("alpha", alpha), ("eps", eps), ("weight_decay", weight_decay),
        ("momentum", momentum), ("centered", centered),
    )  # fmt: skip
    return Optimizer(init, update, "rmsprop", hyper)


def adagrad(
    lr: LearningRate = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
) -> Optimizer:
    """Adagrad, PyTorch's ``torch.optim.Adagrad``.

    With ``t`` the 1-based step, ``clr = lr / (1 + (t - 1) lr_decay)``, ``g += weight_decay * p``,
    ``sum += g^2``, ``p -= clr g / (sqrt(sum) + eps)``. (Optax's ``adagrad`` differs in its defaults:
    initial accumulator 0.1 and ``eps`` inside the square root.)
    """

    def init(params: Any) -> AdagradState:
        return AdagradState(0, _filled_tree(params, initial_accumulator_value))

    def update(grads: Any, state: AdagradState, params: Any, *, value: Any = None, loss_fn: Any = None) -> tuple:
        clr = _lr_at(lr, state.count) / (1.0 + state.count * lr_decay)

        def leaf(p: Any, g: Any, s: Any) -> tuple:
            if weight_decay:
                g = g + weight_decay * p
            s = s + g * g
            return p - clr * (g / (np.sqrt(s) + eps)), s

        new_params, (s,) = _apply("adagrad", leaf, params, grads, (state.sum,))
        return new_params, AdagradState(state.count + 1, s)

    hyper = (
        ("lr", lr), ("lr_decay", lr_decay), ("weight_decay", weight_decay),
        ("initial_accumulator_value", initial_accumulator_value), ("eps", eps),
    )  # fmt: skip
    return Optimizer(init, update, "adagrad", hyper)


# ---------------------------------------------------------------------------------------------------
# L-BFGS


def _ravel(leaves: list, idx: list[int]) -> np.ndarray:
    if not idx:
        return np.zeros(0)
    return np.concatenate([np.ravel(np.asarray(leaves[i], dtype=np.float64)) for i in idx])


def _unravel(vec: np.ndarray, leaves: list, idx: list[int]) -> list:
    new, off = list(leaves), 0
    for i in idx:
        p = leaves[i]
        n = int(np.size(p))
        new[i] = like_leaf(vec[off : off + n].reshape(np.shape(p)), p)
        off += n
    return new


def _two_loop(g: np.ndarray, s_hist: list, y_hist: list) -> np.ndarray:
    """``-H g`` with ``H`` the L-BFGS inverse-Hessian estimate (Nocedal & Wright, algorithm 7.4)."""
    q = g
    coefs = []
    for s, y in zip(reversed(s_hist), reversed(y_hist)):
        rho = 1.0 / (y @ s)
        a = rho * (s @ q)
        q = q - a * y
        coefs.append((rho, a))
    gamma = (s_hist[-1] @ y_hist[-1]) / (y_hist[-1] @ y_hist[-1]) if s_hist else 1.0
    r = gamma * q
    for (s, y), (rho, a) in zip(zip(s_hist, y_hist), reversed(coefs)):
        r = r + s * (a - rho * (y @ r))
    return -r


def lbfgs(
    lr: LearningRate = 1.0,
    history_size: int = 10,
    line_search: str | None = "backtracking",
    max_ls: int = 25,
    c1: float = 1e-4,
    shrink: float = 0.5,
) -> Optimizer:
    """L-BFGS: the two-loop recursion over the last ``history_size`` curvature pairs.

    The direction is ``d = -H g`` with ``H`` scaled by ``s.y / y.y`` of the newest pair (the identity
    scaled by ``min(1, 1/|g|_1)`` on the first step, as PyTorch's ``LBFGS``); a pair is kept only
    when ``s.y > 1e-10``, and a direction that is not a descent direction resets the history.

    Step length: with ``line_search="backtracking"`` (the default) the step starts at ``lr`` and is
    multiplied by ``shrink`` until the Armijo condition ``f(x + t d) <= f(x) + c1 t g.d`` holds
    (at most ``max_ls`` tries; a NaN/Inf trial counts as too long). The line search needs the loss:
    call ``update(grads, state, params, value=f(params), loss_fn=f)`` with ``loss_fn(params) -> float``
    on the same batch (``value`` is optional; it saves one evaluation). ``minimize`` passes both. If
    no step is accepted, the params come back unchanged and the history is cleared. With
    ``line_search=None`` the step is ``lr`` (a fixed step; no loss needed).

    The curvature pair of an update is formed at the next one, from the params and gradient it is
    called with, so use L-BFGS on full batches (the same ``data`` at every step): a pair whose two
    gradients come from different minibatches is not curvature. State vectors are float64 over the
    float leaves (concatenated in pytree order); the params keep their dtypes. Concrete values only.
    """
    if line_search not in ("backtracking", None):
        raise ValueError(f"lbfgs: line_search must be 'backtracking' or None, not {line_search!r}")
    if history_size < 1:
        raise ValueError("lbfgs: history_size must be at least 1")

    def init(params: Any) -> LBFGSState:
        return LBFGSState(0, (), (), None, None)

    def update(grads: Any, state: LBFGSState, params: Any, *, value: Any = None, loss_fn: Any = None) -> tuple:
        pl, pd = flatten(params)
        gl, gd = flatten(grads)
        _check_structure("lbfgs", "gradient", gd, pd)
        idx = [i for i, (p, g) in enumerate(zip(pl, gl)) if g is not None and is_float_leaf(p)]
        x, g = _ravel(pl, idx), _ravel(gl, idx)
        s_hist, y_hist = list(state.s), list(state.y)
        if state.x_prev is not None and state.x_prev.shape == x.shape:
            s, y = x - state.x_prev, g - state.g_prev
            if s @ y > 1e-10:  # keeps H positive definite (PyTorch's threshold)
                s_hist, y_hist = (s_hist + [s])[-history_size:], (y_hist + [y])[-history_size:]
        d = _two_loop(g, s_hist, y_hist)
        gd_ = float(g @ d)
        if not gd_ < 0:  # not a descent direction (or NaN): restart from steepest descent
            s_hist, y_hist = [], []
            d, gd_ = -g, -float(g @ g)
        count = state.count + 1
        if gd_ == 0.0:  # zero gradient: nothing to do
            return params, LBFGSState(count, tuple(s_hist), tuple(y_hist), x, g)
        t = _lr_at(lr, state.count)
        if not s_hist:
            t *= min(1.0, 1.0 / float(np.abs(g).sum()))
        if line_search is None:
            return unflatten(pd, _unravel(x + t * d, pl, idx)), LBFGSState(count, tuple(s_hist), tuple(y_hist), x, g)
        if loss_fn is None:
            raise ValueError(
                "lbfgs: the backtracking line search needs the loss; call "
                "update(grads, state, params, value=f(params), loss_fn=f) with loss_fn(params) -> float, "
                "or make the optimizer with line_search=None for a fixed step"
            )
        f0 = float(loss_fn(params)) if value is None else float(value)
        for _ in range(max_ls):
            trial = unflatten(pd, _unravel(x + t * d, pl, idx))
            if float(loss_fn(trial)) <= f0 + c1 * t * gd_:  # False for NaN: shrink
                return trial, LBFGSState(count, tuple(s_hist), tuple(y_hist), x, g)
            t *= shrink
        return params, LBFGSState(count, (), (), None, None)

    hyper = (
        ("lr", lr), ("history_size", history_size), ("line_search", line_search),
        ("max_ls", max_ls), ("c1", c1), ("shrink", shrink),
    )  # fmt: skip
    return Optimizer(init, update, "lbfgs", hyper, wants_loss=line_search is not None)


# ---------------------------------------------------------------------------------------------------
# learning-rate schedules: callables step -> lr, step counting from 0


def exponential_decay(lr: float, rate: float, every: int = 1, staircase: bool = False) -> Schedule:
    """``lr * rate ** (step / every)`` (``step // every`` with ``staircase``)."""

    def schedule(step: int) -> float:
        k = step // every if staircase else step / every
        return lr * rate**k

    return schedule


def cosine_decay(lr: float, steps: int, final: float = 0.0) -> Schedule:
    """From ``lr`` at step 0 down to ``final`` at ``steps`` along a half cosine; ``final`` after that."""

    def schedule(step: int) -> float:
        frac = min(step, steps) / steps
        return final + (lr - final) * 0.5 * (1.0 + math.cos(math.pi * frac))

    return schedule


def linear_warmup(lr: LearningRate, warmup_steps: int) -> Schedule:
    """``lr`` (a number or a schedule) scaled by ``(step + 1) / warmup_steps`` for the first steps."""

    def schedule(step: int) -> float:
        base = lr(step) if callable(lr) else lr
        return base * min(1.0, (step + 1) / warmup_steps)

    return schedule


from .minimize import MinimizeResult, NonFiniteStepError, minimize  # noqa: E402
