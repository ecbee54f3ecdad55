"""Example workloads for the main job, tests and benchmarks."""
