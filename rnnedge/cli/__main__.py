"""`python -m rnnedge.cli ...` (torchrun uses it too)."""

from rnnedge.cli.app import main

main()
