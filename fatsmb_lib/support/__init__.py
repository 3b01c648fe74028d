"""Support: the checkout's folders, seeds and devices, atomic files and checkpoints, bf16, progress."""
