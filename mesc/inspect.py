"""Human-readable view of a package (``mesc inspect``)."""
