"""Methods of the benchmark: the interface, supervised baselines, GenSeg, the registry."""
