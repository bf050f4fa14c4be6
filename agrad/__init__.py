"""agrad: reverse- and forward-mode automatic differentiation on the Python array API.

One tape engine runs unchanged on NumPy (CPU), CuPy (CUDA) and any array API
library; array-api-strict proves that nothing outside the standard is used.

    >>> import agrad
    >>> x = agrad.tensor(0.5, requires_grad=True)
    >>> f = agrad.exp(agrad.exp(x) + agrad.exp(x) ** 2)
    >>> f.backward()
"""

from . import data, datasets, nn, ops, optim, random, tree
from . import dtypes as _dtypes
from . import special as special  # agrad.special: also xp.special for array API code (SciPy looks there)
from .backend import BackendError, available_backends, get_backend, set_backend, use_backend
from .batching.vmap import VmapError, vmap
from .compile import CompileError, compile
from .custom import checkpoint, custom_jvp, custom_vjp
from .dtypes import DType, get_default_dtype, set_default_dtype
from .gradcheck import GradcheckError, check_grad
from .io import CheckpointError, from_torch_state_dict, load, load_with_metadata, save, to_torch_state_dict
from .ops import *  # noqa: F403 -- the differentiable namespace is the public API
from .ops import __all__ as _ops_all
from .ops import e, inf, linalg, nan, newaxis, pi
from .ops.info import __array_namespace_info__ as __array_namespace_info__
from .random import manual_seed
from .tape import Primitive, enable_grad, gradients, is_grad_enabled, no_grad, primitive
from .tensor import Tensor
from .transforms import grad, hessian, hvp, jacobian, jvp, stop_gradient, value_and_grad, vjp

__version__ = "0.2.0.dev0"
__array_api_version__ = "2024.12"  # the version of the array API standard agrad is written against

# agrad.float32, agrad.int64, agrad.bool...: equal to every backend's dtype of that name
globals().update(_dtypes.ALL)
bool_ = _dtypes.ALL["bool"]

__all__ = [
    "BackendError", "CompileError", "GradcheckError", "compile", "Primitive", "Tensor", "available_backends",
    "check_grad",
    "enable_grad", "get_backend", "grad", "gradients", "is_grad_enabled", "no_grad", "ops", "primitive",
    "set_backend", "use_backend", "value_and_grad", "vjp", "jvp", "jacobian", "hessian", "hvp", "stop_gradient",
    "vmap", "VmapError",
    "custom_vjp", "custom_jvp", "checkpoint", "data", "datasets", "nn", "optim", "random",
    "CheckpointError", "load", "load_with_metadata", "save", "to_torch_state_dict", "from_torch_state_dict",
    "manual_seed", "tree", "e", "inf", "nan", "newaxis", "pi", "linalg",
    "DType", "get_default_dtype", "set_default_dtype", "bool_", *_dtypes.ALL,
    *_ops_all,
]
