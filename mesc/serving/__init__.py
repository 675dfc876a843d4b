"""``mesc serve``: a package behind NVIDIA Triton Inference Server (through PyTriton), and a
client for it. ``server`` binds and runs it, ``model`` is the inference callable, ``requests``
the served model's inputs, parameters and their checks, ``client`` the tritonclient helper,
``local`` a server on loopback ports (tests, load benchmark).
Nothing here is imported by ``import mesc``; PyTriton and tritonclient come with
``pip install 'mesc[serve]'`` (Linux x86-64)."""
