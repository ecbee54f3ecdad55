"""`raytune_inc.neural_compressor.utils.pytorch.load`, as INC 2.6's."""
