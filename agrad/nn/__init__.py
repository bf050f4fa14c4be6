"""Neural networks: modules, layers, losses and the seed's unit network."""

from .layers import MLP, Activation, Identity, Linear, ReLU, Sequential, Sigmoid, Tanh
from .losses import cross_entropy, l2_penalty, logistic_loss, mse_loss
from .module import Module, Parameter
from .units import UnitNetwork, backpropagation

__all__ = [
    "MLP", "Activation", "Identity", "Linear", "Module", "Parameter", "ReLU", "Sequential", "Sigmoid", "Tanh",
    "UnitNetwork", "backpropagation", "cross_entropy", "l2_penalty", "logistic_loss", "mse_loss",
]
