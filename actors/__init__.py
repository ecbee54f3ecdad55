"""Ray actor classes of raytune-inc: the evaluator actor and its pool."""
