"""Loss helpers shared by method files: AP surrogates and the graphed (CUDA-captured) loss wrapper."""
