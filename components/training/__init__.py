"""The training core: plain PyTorch, runs in one process; Ray Train only launches it."""
