"""The PyTorch backend: a model's ops (`ops`), the precision handlers (`precisions`), calibration, a config applied
to a copy of the model and the evaluation of it (`evaluation`), the model digest, and `tune` (`tune`)."""
