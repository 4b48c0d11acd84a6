"""`python -m rnnedge.cli ...` (torchrun uses it too)."""

from .app import main

main()
