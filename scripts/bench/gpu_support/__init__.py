"""The parts of the GPU check (scripts/bench/gpu_check.py, its entry point), a module each, and what they share:

- `steps`: the time budget, the JSON report written after every step, and `step` (one step run, timed and recorded)
- `env`: the parts' names, the device (`Context`), the workload, and the `env` part
- `cuda_test`: the suite's CUDA test as a pytest subprocess, with the stand-ins below where they are needed
- `shared_gpu`: evaluators sharing one GPU against workers=0, each evaluator's peak memory (`MemoryProbe`)
- `precisions`: every op at each precision (and fp8) on the device, fidelity and latency eager and compiled
- `tuned`: the tuned workload on the device, its latency and its compiled accuracy
- `summary`: the lines printed at the end

Not imported, but put on the cuda_test subprocess's PYTHONPATH where needed: `stubs/` (a stand-in for hypothesis) and
`plugin/` (the pytest plugin `gpu_check_ray`, which starts Ray with the evaluators' PYTHONPATH kept).
"""
