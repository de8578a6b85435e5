"""Training and evaluation: config, loop, checkpoints. Used by the CLI; usable from Python."""
