"""The speed variants around the plain step (al2.training.stack.Trainer.step): the step
replayed as a CUDA graph (graph), the optimiser on one flat buffer (flat_sgd). Each equals the
plain path (tests/test_training.py)."""
