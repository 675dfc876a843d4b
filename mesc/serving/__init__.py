"""``mesc serve``: a package behind NVIDIA Triton Inference Server, and a client for it.
``server`` binds and runs it through PyTriton, ``repository`` writes it instead as a model of a
Triton model repository for a stock ``tritonserver`` (``--model-repository``), whose Python
backend runs ``python_backend``; ``model`` is the inference logic both run, ``requests`` the
served model's inputs, parameters and their checks, ``client`` the tritonclient helper, ``local``
a server on loopback ports (tests, load benchmark).
Nothing here is imported by ``import mesc``; PyTriton and tritonclient come with
``pip install 'mesc[serve]'`` (Linux x86-64, or aarch64 with glibc 2.35+)."""

from __future__ import annotations
