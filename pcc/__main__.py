"""``python -m pcc``: the ``pcc`` command."""

from pcc.cli import main

main()
