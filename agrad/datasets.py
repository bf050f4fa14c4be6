"""``agrad.datasets``: the dataset loaders (see :mod:`agrad.data`)."""

from .data import DataLoader, DatasetError, Split, default_data_dir, mnist, parse_idx

__all__ = ["DataLoader", "DatasetError", "Split", "default_data_dir", "mnist", "parse_idx"]
