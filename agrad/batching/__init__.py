"""Batching: the machinery of ``agrad.vmap``.

``batched`` holds the batched arrays a mapped function computes on and their namespace;
``rules`` the batching rules of the common kinds of primitive, which the primitives'
declarations name (``agrad.primitive(..., batch=rules.reduction)``); ``vmap`` the
transform itself. Nothing is imported here, so that the tape can import ``rules``
while agrad is still being imported.
"""
