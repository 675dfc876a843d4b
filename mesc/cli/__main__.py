"""``python -m mesc.cli``: the same as the ``mesc`` command."""

from __future__ import annotations

from mesc.cli import main

main()
