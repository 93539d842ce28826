"""The shared loop, evaluation, checkpoints and logging."""
