"""agrad's differentiable array namespace.

Every function here takes Tensors (or raw arrays and Python scalars, which are
constants) and returns a Tensor. The module doubles as the ``xp`` that VJPs run
with under ``create_graph=True``, so it mirrors the array API names they use.
"""

from .. import tape as _tape_module
from .. import tensor as _tensor_module
from .conversions import astype, identity, to_device
from .creation import (
    arange,
    asarray,
    empty,
    empty_like,
    from_dlpack,
    full,
    full_like,
    ones,
    ones_like,
    tensor,
    zeros,
    zeros_like,
)
from .elementwise import (
    abs,
    add,
    clip,
    copysign,
    cos,
    divide,
    exp,
    expm1,
    log,
    log1p,
    log2,
    log10,
    logaddexp,
    maximum,
    minimum,
    multiply,
    negative,
    positive,
    pow,
    reciprocal,
    relu,
    remainder,
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
from .no_gradient import (
    all,
    any,
    argmax,
    argmin,
    bitwise_and,
    bitwise_invert,
    bitwise_left_shift,
    bitwise_or,
    bitwise_right_shift,
    bitwise_xor,
    ceil,
    count_nonzero,
    equal,
    floor,
    floor_divide,
    greater,
    greater_equal,
    isfinite,
    isinf,
    isnan,
    less,
    less_equal,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    nextafter,
    nonzero,
    not_equal,
    round,
    searchsorted,
    sign,
    signbit,
    trunc,
)
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
from .trigonometric import acos, acosh, asin, asinh, atan, atan2, atanh, cosh, hypot, sinh

_tensor_module._ops = __import__(__name__, fromlist=["_"])
_tensor_module._tape = _tape_module

__all__ = [
    "abs", "acos", "acosh", "add", "all", "any", "arange", "argmax", "argmin", "asarray", "asin", "asinh", "astype",
    "atan", "atan2", "atanh", "bitwise_and", "bitwise_invert", "bitwise_left_shift", "bitwise_or",
    "bitwise_right_shift", "bitwise_xor", "broadcast_to", "ceil", "clip", "concat", "copysign", "cos", "cosh",
    "count_nonzero", "divide", "empty", "empty_like", "equal", "exp", "expand_dims", "expm1", "floor",
    "floor_divide", "from_dlpack", "full", "full_like", "getitem", "greater", "greater_equal", "hypot", "identity",
    "isfinite", "isinf", "isnan", "less", "less_equal", "linear", "log", "log10", "log1p", "log2", "log_softmax",
    "logaddexp", "logical_and", "logical_not", "logical_or", "logical_xor", "logsumexp", "matmul",
    "matrix_transpose", "max", "maximum", "mean", "min", "minimum", "multiply", "negative", "nextafter", "nonzero",
    "not_equal", "ones", "ones_like", "permute_dims", "positive", "pow", "reciprocal", "relu", "remainder",
    "reshape", "round", "scatter_add", "searchsorted", "sigmoid", "sign", "signbit", "sin", "sinh", "softmax",
    "sqrt", "square", "squeeze", "stack", "subtract", "sum", "take", "tan", "tanh", "tensor", "tensordot",
    "to_device", "trunc", "var", "where", "zeros", "zeros_like",
]
