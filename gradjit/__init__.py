"""gradjit: ``grad`` as a higher-order function over plain NumPy code.

    import numpy as np
    import gradjit as gj

    def f(a, b, c):
        if b > c:
            return a * np.sin(b)
        return a + b * c

    gj.grad(f)(3.0, 2.0, 1.0)                  # 0.9092974268256817
    print(gj.make_wengert(f)(3.0, 2.0, 1.0))   # the Wengert list

Layers (see docs/design.md): ``tracing`` records primitives into a ``wengert`` list; ``reverse``
walks it with the rules in ``rules``; ``numpy_api`` routes NumPy calls on traced values to
primitives; ``registry`` lets users add and override gradients; executors live in
``gradjit.kernels``.
"""

from __future__ import annotations

from . import jvp_rules as _jvp_rules  # noqa: F401  (registers the forward-mode rules)
from . import nn, optim  # gj.nn, gj.optim; Numba and tqdm load lazily, on first use
from . import numpy_api as _numpy_api  # noqa: F401  (installs Tracer's NumPy surface)
from .api import elementwise_grad, grad, make_wengert, stop_gradient, value_and_grad, vjp
from .checkpoint import checkpoint
from .checks import check_grads
from .config import config
from .debug import NonFiniteError, debug_nans, set_debug_nans
from .errors import (
    ArgnumsError,
    EscapedTracerError,
    GradjitError,
    NonDifferentiableInputError,
    NonScalarOutputError,
    NoVJPError,
    TracerConversionError,
    UnsupportedOperationError,
)
from .jacobians import hessian, hvp, jacfwd, jacobian, jacrev, jvp, linearize, vhp
from .jit import jit
from .placement import DeviceArray, PlacementError, to_device, to_host
from .pytree import tree_map
from .registry import PrimitiveFunction, custom_vjp, defjvp, defvjp, gradients, primitive, register_module
from .taylor import taylor
from .tracing import ZERO, Primitive, Tracer
from .wengert import Wengert

__version__ = "0.1.0"

__all__ = [
    "grad", "value_and_grad", "vjp", "elementwise_grad", "make_wengert", "stop_gradient",
    "jvp", "linearize", "jacfwd", "jacrev", "jacobian", "hessian", "hvp", "vhp",
    "taylor", "jit", "checkpoint",
    "check_grads", "primitive", "custom_vjp", "defvjp", "defjvp", "gradients", "register_module",
    "PrimitiveFunction", "Primitive", "Tracer", "Wengert", "ZERO", "tree_map",
    "GradjitError", "TracerConversionError", "NonScalarOutputError", "NonDifferentiableInputError",
    "NoVJPError", "UnsupportedOperationError", "ArgnumsError", "EscapedTracerError",
    "config", "debug_nans", "set_debug_nans", "NonFiniteError", "nn", "optim",
    "to_device", "to_host", "DeviceArray", "PlacementError",
]  # fmt: skip
