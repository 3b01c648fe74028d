"""Support: the checkout's folders, seeds and devices, atomic files, bf16, progress lines."""
