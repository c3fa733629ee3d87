"""flax nnx modules built from the graph IR, with the parameterisation baked in."""
