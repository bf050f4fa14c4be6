"""agrad's differentiable array namespace.

Every function here takes Tensors (or raw arrays and Python scalars, which are
constants) and returns a Tensor. The module doubles as the ``xp`` that VJPs run
with under ``create_graph=True``, so it mirrors the array API names they use.
"""

from .. import tape as _tape_module
from .. import tensor as _tensor_module
from .conversions import astype, identity, to_device
from .creation import (
    all,
    any,
    arange,
    argmax,
    argmin,
    asarray,
    ceil,
    empty,
    empty_like,
    equal,
    floor,
    from_dlpack,
    full,
    full_like,
    greater,
    greater_equal,
    isfinite,
    isnan,
    less,
    less_equal,
    logical_and,
    logical_not,
    logical_or,
    not_equal,
    ones,
    ones_like,
    round,
    sign,
    tensor,
    zeros,
    zeros_like,
)
from .elementwise import (
    abs,
    add,
    clip,
    cos,
    divide,
    exp,
    expm1,
    log,
    log1p,
    maximum,
    minimum,
    multiply,
    negative,
    pow,
    relu,
    sigmoid,
    sin,
    sqrt,
    square,
    subtract,
    tan,
    tanh,
    where,
)
from .linalg import linear, matmul, matrix_transpose, tensordot
from .reductions import log_softmax, logsumexp, max, mean, min, softmax, sum, var
from .shapes import (
    broadcast_to,
    concat,
    expand_dims,
    getitem,
    permute_dims,
    reshape,
    scatter_add,
    squeeze,
    stack,
    take,
)

_tensor_module._ops = __import__(__name__, fromlist=["_"])
_tensor_module._tape = _tape_module

__all__ = [
    "abs", "add", "all", "any", "arange", "argmax", "argmin", "asarray", "astype", "broadcast_to", "ceil",
    "clip", "concat", "cos", "divide", "empty", "empty_like", "equal", "exp", "expand_dims", "expm1", "floor", "full",
    "from_dlpack", "full_like", "getitem", "greater", "greater_equal", "identity", "isfinite", "isnan", "less",
    "less_equal",
    "linear", "log",
    "log1p", "log_softmax", "logical_and", "logical_not", "logical_or", "logsumexp", "matmul",
    "matrix_transpose", "max", "maximum", "mean", "min", "minimum", "multiply", "negative", "not_equal",
    "ones", "ones_like", "permute_dims", "pow", "relu", "reshape", "round", "scatter_add", "sigmoid",
    "sign", "sin", "softmax", "sqrt", "square", "squeeze", "stack", "subtract", "sum", "take", "tan",
    "tanh", "tensor", "tensordot", "to_device", "var", "where", "zeros", "zeros_like",
]
