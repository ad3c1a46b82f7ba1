"""svcca: similarity of neural representations, written for this repository.

CCA and its truncated mean, SVCCA (Raghu et al. 2017), PWCCA (Morcos et al. 2018) and linear
CKA (Kornblith et al. 2019). Inputs are (neurons, datapoints), numpy arrays or torch tensors
(CPU or GPU); computation is float64; nothing is printed. `pairwise` computes a statistic for
many pairs from one Gram matrix.
"""
from .batched import STATISTICS, pairwise
from .measures import compute_pwcca, compute_svcca, get_cca_similarity, linear_cka

__all__ = ["STATISTICS", "compute_pwcca", "compute_svcca", "get_cca_similarity", "linear_cka",
           "pairwise"]
