"""Loss functions: task losses, distillation losses, CMKT's alignment and translation losses."""
