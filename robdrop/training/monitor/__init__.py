"""The live perturbation-underfitting monitor: a probe measured after every epoch (`probe`), a
replayable rule that turns its columns into a flag (`rule`), and the epoch hook that reacts to
the flag (`hook`)."""
