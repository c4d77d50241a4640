"""``python -m bench.cli`` is the ``bench`` command too."""

from bench.cli import main

main()
