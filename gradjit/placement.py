"""Placement: arrays on the host (NumPy) or on a CUDA device (``DeviceArray``), and moving pytrees.

    x = gj.to_device(x, "cuda")        # Torch's x:cuda(): the data moves once
    g = gj.grad(loss)(params, x, y)    # every primitive of both sweeps runs on the GPU
    gj.to_host(g)                      # NumPy arrays again

A ``DeviceArray`` is a strided view (shape, element strides, offset) of a 1-D buffer in GPU memory.
It implements NumPy's protocols (``__array_ufunc__``, ``__array_function__``), operators, indexing
and the usual methods by launching CUDA kernels (``gradjit.kernels.cuda``, imported on first use:
``import gradjit`` never imports ``numba.cuda``). Primitives' implementations are NumPy calls, so
``prim.impl(device_array, ...)`` runs on the device, and tracing, ``grad``, the rules and ``jit``
need no device-specific code: a traced value whose concrete value is a ``DeviceArray`` keeps every
intermediate of both sweeps on the device.

Invariants
----------
- One operation runs in one place. Device arrays combine with Python and NumPy scalars and with host
  arrays that hold a single value (0-d, size 1, or a broadcast view of one value), which are passed
  to the kernel by value; a host array of any other size mixed with a device array raises
  ``PlacementError`` naming the operation and which argument is where. Host integer and boolean
  arrays used as *indices* of a device array are copied to the device (as PyTorch accepts CPU
  indices for CUDA tensors).
- Nothing crosses to the host silently: ``np.asarray(device_array)`` raises (use ``gj.to_host``).
  A scalar crosses when Python asks for one (``bool``, ``int``, ``float``, ``.item()``: control flow
  on device values works, and inside a trace it is guarded as usual).
- Values gradjit creates for itself (zeros of a gradient, one-hot bases, identity matrices) are
  created where the values they combine with live: ``zeros``/``full``/``put`` below.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import GradjitError

__all__ = ["DeviceArray", "PlacementError", "to_device", "to_host", "device_of", "is_device", "zeros", "full", "put"]

DEVICES = ("cuda",)


class PlacementError(GradjitError, ValueError):
    """Host and device arrays met in one operation, or a device array was asked to become a NumPy array."""


_BACKEND: Any = None


def _backend() -> Any:
    """The CUDA backend (``numba.cuda`` is imported here, on first use); a clear error without a GPU."""
    global _BACKEND
    if _BACKEND is None:
        advice = (
            "Install the extra on a machine with an NVIDIA GPU (pip install gradjit[cuda]), or run on Numba's "
            "CUDA simulator (NUMBA_ENABLE_CUDASIM=1, slow: for tests)."
        )
        try:
            from .kernels import cuda
        except ImportError as e:
            raise PlacementError("gradjit.to_device", f"the CUDA backend cannot be imported ({e})", advice) from e
        if not cuda.SIM and not cuda.available():
            raise PlacementError("gradjit.to_device", "no CUDA GPU is available to Numba", advice)
        _BACKEND = cuda
    return _BACKEND


def _numpy() -> Any:
    """NumPy's API on device arrays (``gradjit.kernels.cuda_numpy``)."""
    from .kernels import cuda_numpy

    return cuda_numpy


def _c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(out))


class DeviceArray:
    """An array in CUDA device memory that behaves like an ``ndarray`` for NumPy code.

    Made by ``gradjit.to_device``; ``gradjit.to_host`` (or ``.to_host()``) copies it back. Views
    (``reshape`` of a contiguous array, ``transpose``, ``.T``, basic slicing, ``broadcast_to``) share
    the buffer, as NumPy's do.
    """

    __slots__ = ("_buf", "shape", "dtype", "_strides", "_offset", "_writeable", "__weakref__")
    __array_priority__ = 100  # below Tracer (1000): a traced operation on device values is the tracer's
    device = "cuda"

    def __init__(
        self,
        buf: Any,
        shape: tuple[int, ...],
        strides: tuple[int, ...] | None = None,
        offset: int = 0,
        writeable: bool = True,
    ):
        self._buf = buf  # a 1-D numba device array
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(buf.dtype)
        self._strides = _c_strides(self.shape) if strides is None else tuple(int(s) for s in strides)
        self._offset = int(offset)
        self._writeable = writeable

    # -- metadata ---------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def strides(self) -> tuple[int, ...]:
        """Strides in bytes, as NumPy reports them."""
        return tuple(s * self.dtype.itemsize for s in self._strides)

    @property
    def is_contiguous(self) -> bool:
        return all(n == 1 or s == c for n, s, c in zip(self.shape, self._strides, _c_strides(self.shape)))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object (a 0-d device array)")
        return self.shape[0]

    def __iter__(self) -> Any:
        if not self.shape:
            raise TypeError("iteration over a 0-d device array")
        return (self[i] for i in range(self.shape[0]))

    __hash__ = None  # like ndarray: == is elementwise

    # -- NumPy protocols ----------------------------------------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return _numpy().array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        return _numpy().array_function(func, types, args, kwargs)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise PlacementError(
            "np.asarray / np.array of a device array",
            f"this array ({describe(self)}) lives on the GPU; NumPy would copy it to the host silently",
            "Copy it explicitly with gradjit.to_host(x) (or x.to_host()), or keep computing with NumPy "
            "functions, which run on the device.",
        )

    # -- conversions to Python scalars: they cross to the host ---------------------------------
    def item(self, *args: Any) -> Any:
        return _numpy().item(self, *args)

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError(
                "The truth value of an array with more than one element is ambiguous. Use a.any() or a.all()"
            )
        return bool(self.item())

    def __int__(self) -> int:
        return int(self._scalar("int()"))

    def __float__(self) -> float:
        return float(self._scalar("float()"))

    def __complex__(self) -> complex:
        return complex(self._scalar("complex()"))

    def __index__(self) -> int:
        if self.dtype.kind not in "iub":
            raise TypeError(f"only integer device arrays can be used as an index, not {self.dtype}")
        return int(self._scalar("index"))

    def _scalar(self, what: str) -> Any:
        if self.size != 1:
            raise TypeError(f"only arrays of size 1 can be converted to Python scalars ({what})")
        return self.item()

    def tolist(self) -> Any:
        return self.to_host().tolist()

    def to_host(self) -> np.ndarray:
        """A NumPy copy of this array."""
        return _backend().to_host(self)

    def device_put(self, value: Any) -> DeviceArray:
        """``value`` (a host array or scalar) copied to this array's device."""
        return _backend().from_host(np.asarray(value))

    def __repr__(self) -> str:
        return f"DeviceArray({np.array2string(self.to_host(), separator=', ')}, dtype={self.dtype}, device='cuda')"

    def __str__(self) -> str:
        return str(self.to_host())

    def __format__(self, spec: str) -> str:
        return format(self.to_host() if self.shape else self.item(), spec)

    # -- indexing ---------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> Any:
        return _numpy().getitem(self, index)

    def __setitem__(self, index: Any, value: Any) -> None:
        _numpy().setitem(self, index, value)

    # -- array methods (NumPy functions, which run on the device) -----------------------------
    @property
    def T(self) -> DeviceArray:
        return np.transpose(self)

    @property
    def mT(self) -> DeviceArray:
        return np.swapaxes(self, -1, -2)

    def reshape(self, *shape: Any, order: str = "C") -> DeviceArray:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return np.reshape(self, shape, order=order)

    def transpose(self, *axes: Any) -> DeviceArray:
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        return np.transpose(self, axes or None)

    def astype(self, dtype: Any, copy: bool = True) -> DeviceArray:
        return _numpy().astype(self, dtype, copy)

    def copy(self) -> DeviceArray:
        return np.copy(self)

    def ravel(self) -> DeviceArray:
        return np.ravel(self)

    def flatten(self) -> DeviceArray:
        return np.copy(np.ravel(self))

    def squeeze(self, axis: Any = None) -> DeviceArray:
        return np.squeeze(self, axis)

    def swapaxes(self, a: int, b: int) -> DeviceArray:
        return np.swapaxes(self, a, b)

    def sum(self, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> DeviceArray:
        return np.sum(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def prod(self, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> DeviceArray:
        return np.prod(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def mean(self, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> DeviceArray:
        return np.mean(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def var(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> DeviceArray:
        return np.var(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def std(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> DeviceArray:
        return np.std(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> DeviceArray:
        return np.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> DeviceArray:
        return np.min(self, axis=axis, keepdims=keepdims)

    def any(self, axis: Any = None, keepdims: bool = False) -> DeviceArray:
        return np.any(self, axis=axis, keepdims=keepdims)

    def all(self, axis: Any = None, keepdims: bool = False) -> DeviceArray:
        return np.all(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: Any = None, keepdims: bool = False) -> DeviceArray:
        return np.argmax(self, axis=axis, keepdims=keepdims)

    def argmin(self, axis: Any = None, keepdims: bool = False) -> DeviceArray:
        return np.argmin(self, axis=axis, keepdims=keepdims)

    def cumsum(self, axis: Any = None) -> DeviceArray:
        return np.cumsum(self, axis=axis)

    def cumprod(self, axis: Any = None) -> DeviceArray:
        return np.cumprod(self, axis=axis)

    def clip(self, a_min: Any = None, a_max: Any = None) -> DeviceArray:
        return np.clip(self, a_min, a_max)

    def round(self, decimals: int = 0) -> DeviceArray:
        return np.round(self, decimals)

    def dot(self, other: Any) -> DeviceArray:
        return np.dot(self, other)

    def nonzero(self) -> tuple:
        return np.nonzero(self)

    def fill(self, value: Any) -> None:
        self[...] = value

    # -- operators: NumPy's ufuncs (a tracer operand takes over through its own __array_ufunc__) --
    def __neg__(self) -> Any:
        return np.negative(self)

    def __pos__(self) -> Any:
        return np.positive(self)

    def __abs__(self) -> Any:
        return np.absolute(self)

    def __invert__(self) -> Any:
        return np.invert(self)


def _binary(ufunc: np.ufunc) -> tuple:
    def op(self: DeviceArray, other: Any) -> Any:
        return ufunc(self, other)

    def rop(self: DeviceArray, other: Any) -> Any:
        return ufunc(other, self)

    def iop(self: DeviceArray, other: Any) -> Any:
        return ufunc(self, other, out=self)

    return op, rop, iop


for _name, _uf in {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
    "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "matmul": np.matmul,
    "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor,
}.items():  # fmt: skip
    _op, _rop, _iop = _binary(_uf)
    setattr(DeviceArray, f"__{_name}__", _op)
    setattr(DeviceArray, f"__r{_name}__", _rop)
    setattr(DeviceArray, f"__i{_name}__", _iop)
for _name, _uf in {
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal,
}.items():  # fmt: skip
    setattr(DeviceArray, f"__{_name}__", _binary(_uf)[0])


def describe(x: Any) -> str:
    """``cuda float64[3, 4]`` / ``host ndarray float64[4]`` / ``float``: what and where a value is."""
    if isinstance(x, DeviceArray):
        return f"a device array, cuda {x.dtype}{list(x.shape)}"
    if isinstance(x, np.ndarray):
        return f"a host array, numpy {x.dtype}{list(x.shape)}"
    return f"a {type(x).__name__}"


# ---------------------------------------------------------------------------------------------
# Where values live
# ---------------------------------------------------------------------------------------------
def _concrete(x: Any) -> Any:
    from .tracing import Tracer

    while type(x) is Tracer:
        x = x._value
    return x


def device_of(x: Any) -> str:
    """``"cuda"`` for a device array (or a traced value of one), else ``"cpu"``."""
    return "cuda" if isinstance(_concrete(x), DeviceArray) else "cpu"


def is_device(x: Any) -> bool:
    """True for a ``DeviceArray`` or a traced value whose concrete value is one."""
    return isinstance(_concrete(x), DeviceArray)


def zeros(shape: Any, dtype: Any, like: Any) -> Any:
    """Zeros of ``shape`` and ``dtype`` placed where ``like`` lives (a NumPy array on the host)."""
    return full(shape, 0, dtype, like)


def full(shape: Any, value: Any, dtype: Any, like: Any) -> Any:
    """An array of ``value`` placed where ``like`` lives."""
    if isinstance(_concrete(like), DeviceArray):
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
        return _backend().full(shape, value, dtype)
    return np.full(shape, value, dtype=dtype)


def put(value: Any, like: Any) -> Any:
    """``value`` (a host constant gradjit made) copied to the device when ``like`` lives there."""
    if isinstance(_concrete(like), DeviceArray) and isinstance(value, (np.ndarray, np.generic)):
        return _backend().from_host(np.asarray(value))
    return value


# ---------------------------------------------------------------------------------------------
# Moving pytrees
# ---------------------------------------------------------------------------------------------
def to_device(tree: Any, device: str = "cuda") -> Any:
    """Copy every array leaf of ``tree`` to ``device`` (``"cuda"``); Python scalars stay as they are.

    NumPy arrays and NumPy scalars become ``DeviceArray``s (a float stays a float: it is passed to
    kernels by value); device arrays are returned as they are. Needs a CUDA GPU with ``numba-cuda``
    (``pip install gradjit[cuda]``) or Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``).
    """
    if device not in DEVICES:
        raise ValueError(f"to_device: unknown device {device!r}; available: {list(DEVICES)}")
    from . import pytree

    backend = _backend()

    def move(x: Any) -> Any:
        if isinstance(x, DeviceArray):
            return x
        if isinstance(x, (np.ndarray, np.generic)):
            if x.dtype.kind not in "fiub":
                raise TypeError(f"to_device: arrays of dtype {x.dtype} are not supported on the device")
            return backend.from_host(np.asarray(x))
        if _is_tracer(x):
            raise PlacementError(
                "to_device",
                "a traced value cannot be moved while it is being traced",
                "Move the inputs before calling the transformed function: f(gj.to_device(x)).",
            )
        return x

    return pytree.tree_map(move, tree)


def to_host(tree: Any) -> Any:
    """Copy every device array leaf of ``tree`` to a NumPy array; other leaves are returned as they are."""
    from . import pytree

    def move(x: Any) -> Any:
        return x.to_host() if isinstance(x, DeviceArray) else x

    return pytree.tree_map(move, tree)


def _is_tracer(x: Any) -> bool:
    from .tracing import Tracer

    return type(x) is Tracer
