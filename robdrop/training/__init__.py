"""The training layer: the configuration and presets, what a configuration builds, the one
training loop with its epoch hooks (quick check, monitor), run folders, and torchrun."""
