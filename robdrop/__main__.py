"""`python -m robdrop` (and `torchrun -m robdrop`) runs the CLI."""

from robdrop.cli import main

main()
