"""Tasks of control hosts (group control): the scheduled drift check and repair."""
