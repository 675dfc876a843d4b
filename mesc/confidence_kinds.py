"""The per-pixel confidence kinds of the MESS policy (see :mod:`mesc.policy`).

On their own so that the manifest checks in :mod:`mesc.package` read them without numpy.
"""

CONFIDENCE_KINDS = ("top1", "entropy")
