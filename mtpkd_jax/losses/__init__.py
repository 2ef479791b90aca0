"""Loss functions: supervised task losses (`task`), distillation losses (`distill`), and CMKT's
latent `alignment` (deep CCA, cosine, MSE) and sequence `translation` losses."""
