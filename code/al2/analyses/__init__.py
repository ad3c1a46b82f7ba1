"""What code/evaluate.py computes from a folder of trained runs: the runs read back (runs,
checkpoints), Table 1 (report), similarity (Sec. 5.1), cumulative ablation (Sec. 5.2), how sure
a result is (replicates), the remedies compared (comparison), the figures (plotting), and all of
it for one folder (evaluation)."""
