"""Training a grid of runs at once (paper Sec. 4, Table 1): its settings (config), MNIST and the
label noise (data), the network and its stacked form (model), what each run of a stack does
(plan), the stack's step and epoch (stack), the epoch loop (grid), the grid's folder (folder),
what each epoch writes (records), shards and stops (shards, stopping), inference for all runs
(inference)."""
