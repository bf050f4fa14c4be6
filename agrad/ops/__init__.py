"""agrad's differentiable array namespace.

Every function here takes Tensors (or raw arrays and Python scalars, which are
constants) and returns a Tensor. The module doubles as the ``xp`` that VJPs run
with under ``create_graph=True``, so it mirrors the array API names they use.
"""

import math as _math

from . import linalg as linalg  # agrad.linalg, and xp.linalg for rules run on Tensors
from .conversions import astype, identity, to_device
from .creation import (
    arange,
    asarray,
    empty,
    empty_like,
    eye,
    from_dlpack,
    full,
    full_like,
    linspace,
    meshgrid,
    ones,
    ones_like,
    tensor,
    tril,
    triu,
    zeros,
    zeros_like,
)
from .cumulative import cumulative_prod, cumulative_sum, diff, prod, std
from .data_types import broadcast_shapes, can_cast, conj, finfo, iinfo, imag, isdtype, real, result_type
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
from .linalg import linear, matmul, matrix_transpose, tensordot, vecdot
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
from .sets import unique_all, unique_counts, unique_inverse, unique_values
from .shapes import assign as assign  # (functional item assignment, and what VJPs call under create_graph)
from .shapes import (
    broadcast_arrays,
    broadcast_to,
    concat,
    expand_dims,
    flip,
    getitem,
    moveaxis,
    permute_dims,
    repeat,
    reshape,
    roll,
    scatter_add,
    squeeze,
    stack,
    take,
    take_along_axis,
    tile,
    unstack,
)
from .shapes import index_update as index_update
from .sorting import argsort, sort
from .trigonometric import acos, acosh, asin, asinh, atan, atan2, atanh, cosh, hypot, sinh

# The standard's constants.
e, inf, nan, pi, newaxis = _math.e, _math.inf, _math.nan, _math.pi, None


__all__ = [
    "abs", "acos", "acosh", "add", "all", "any", "arange", "argmax", "argmin", "argsort", "asarray", "asin",
    "asinh", "astype", "atan", "atan2", "atanh", "bitwise_and", "bitwise_invert", "bitwise_left_shift",
    "bitwise_or", "bitwise_right_shift", "bitwise_xor", "broadcast_arrays", "broadcast_shapes", "broadcast_to",
    "can_cast", "ceil", "clip", "concat", "conj", "copysign", "cos", "cosh", "count_nonzero", "cumulative_prod",
    "cumulative_sum", "diff", "divide", "empty", "empty_like", "equal", "exp", "expand_dims", "expm1", "eye",
    "finfo", "flip", "floor", "floor_divide", "from_dlpack", "full", "full_like", "getitem", "greater",
    "greater_equal", "hypot", "identity", "iinfo", "imag", "isdtype", "isfinite", "isinf", "isnan", "less",
    "less_equal", "linear", "linspace", "log", "log10", "log1p", "log2", "log_softmax", "logaddexp", "logical_and",
    "logical_not", "logical_or", "logical_xor", "logsumexp", "matmul", "matrix_transpose", "max", "maximum", "mean",
    "meshgrid", "min", "minimum", "moveaxis", "multiply", "negative", "nextafter", "nonzero", "not_equal", "ones",
    "ones_like", "permute_dims", "positive", "pow", "prod", "real", "reciprocal", "relu", "remainder", "repeat",
    "reshape", "result_type", "roll", "round", "scatter_add", "searchsorted", "sigmoid", "sign", "signbit", "sin",
    "sinh", "softmax", "sort", "sqrt", "square", "squeeze", "stack", "std", "subtract", "sum", "take",
    "take_along_axis", "tan", "tanh", "tensor", "tensordot", "tile", "to_device", "tril", "triu", "trunc",
    "unique_all", "unique_counts", "unique_inverse", "unique_values", "unstack", "var", "vecdot", "where", "zeros",
    "zeros_like",
]
