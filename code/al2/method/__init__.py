"""The method, to read beside the paper: Eq. 1 (loss), the progressive weight w_e (schedule),
AL2 on any PyTorch network (regularizer), and beyond the paper the remedies for noisy labels
(remedies), plain losses for the same training loop."""
