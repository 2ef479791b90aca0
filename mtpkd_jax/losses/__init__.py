"""Loss functions: supervised task losses (`task`) and distillation/alignment losses (`distill`)."""
