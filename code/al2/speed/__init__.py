"""The speed variants around the plain step (al2.training.stack.Trainer.step), installed on a
trainer from outside by variants.Variants (train.py's --trunk, --optimizer, --cuda-graph): the
step replayed as a CUDA graph (graph), the optimiser on one flat buffer (flat_sgd), other kernels
for the stacked trunk (trunks). Each equals the plain path (tests/test_training.py)."""
