"""``python -m mesc.cli``: the same as the ``mesc`` command."""

from mesc.cli import main

main()
