"""Neural networks: modules, layers, losses, initialisers and the seed's unit network."""

from . import init, utils
from .layers import MLP, Activation, Dropout, Identity, Lambda, Linear, ReLU, Sequential, Sigmoid, Tanh
from .losses import cross_entropy, l2_penalty, logistic_loss, mse_loss
from .module import Module, ModuleDict, ModuleList, Parameter, ParameterList
from .units import UnitNetwork, backpropagation

__all__ = [
    "MLP", "Activation", "Dropout", "Identity", "Lambda", "Linear", "Module", "ModuleDict", "ModuleList", "Parameter",
    "ParameterList", "ReLU", "Sequential", "Sigmoid", "Tanh", "UnitNetwork", "backpropagation", "cross_entropy",
    "init", "l2_penalty", "logistic_loss", "mse_loss", "utils",
]
