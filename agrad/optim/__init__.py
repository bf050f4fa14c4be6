"""Optimizers (SGD, Adam, L-BFGS) with parameter groups and state dicts, and learning-rate schedulers."""

from . import lr_scheduler
from .optimizers import LBFGS, SGD, Adam, Optimizer, ParamGroup

__all__ = ["LBFGS", "SGD", "Adam", "Optimizer", "ParamGroup", "lr_scheduler"]
