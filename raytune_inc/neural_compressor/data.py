"""Data as Neural Compressor 2.6 takes it, made into what `tune` takes.

- A dataloader batch is `(input, label)` (a tuple or list of two), or the input alone (anything
  else, a dict included); a dict batch may carry its label as "label" or "labels", which stays
  in the input (the model gets it as a keyword, as INC's `forward_wrapper` passes it).
- An input is a tensor, a tuple or list of positional inputs, or a dict of keyword inputs.
- Calibration reads `ceil(calibration_sampling_size / batch_size)` batches of the calibration
  dataloader and no more (fewer if it is shorter), once: they are the calibration data.
- `calib_func(model)` runs the FP32 model itself (in a pipeline, if it likes): it is called once,
  and the inputs the model receives are recorded, as they are, as the calibration data.
- With `eval_dataloader` and a metric the evaluation loop is ours: `metric.reset()`, then for each
  batch `metric.update(model(input), label)` (output and label moved to the CPU), then
  `metric.result()`, on the evaluator's device. With the built-in `topk` metric and a torch
  DataLoader whose sample count is known up front (`len(loader.sampler)`, no `drop_last`), the
  loop yields `running.Running` after each batch (each sample scores 0 or 1), so a trial is
  stopped once it surely misses the goal (see `raytune_inc.running`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from ..pytorch.batches import Call, run_batch
from ..running import Running, RunningError
from .metric import MetricSpec, TopK


def split(batch: Any) -> tuple[Any, Any]:
    """A dataloader batch as (input, label): `(input, label)` pairs are split, anything else is the input (label None,
    or a dict's "label"/"labels")."""
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        for key in ("label", "labels"):
            if key in batch:
                return batch, batch[key]
    return batch, None


def check_dataloader(name: str, loader: Any) -> None:
    """INC's check of a dataloader: it can be iterated (ValueError otherwise)."""
    if loader is not None and not hasattr(loader, "__iter__"):
        raise ValueError(f"{name} must be iterable (a torch DataLoader, or any object with __iter__), got {type(loader).__name__}")


def _batch_size(loader: Any, first: Any) -> int:
    """The loader's `batch_size`, else the length of the first tensor of its first input."""
    size = getattr(loader, "batch_size", None) or getattr(loader, "total_batch_size", None)
    if isinstance(size, int) and size > 0:
        return size
    tensors = [x for x in torch.utils._pytree.tree_leaves(first) if isinstance(x, torch.Tensor) and x.dim() > 0]
    return int(tensors[0].shape[0]) if tensors else 1


def calibration_batches(loader: Iterable, sampling_size: int) -> list:
    """The inputs of the first `ceil(sampling_size / batch_size)` batches of `loader` (INC's calibration iterations)."""
    batches: list = []
    wanted = None
    for batch in loader:
        inputs, _ = split(batch)
        if wanted is None:
            wanted = math.ceil(sampling_size / _batch_size(loader, inputs))
        batches.append(inputs)
        if len(batches) >= wanted:
            break
    if not batches:
        raise ValueError("calib_dataloader is empty: give at least one batch")
    return batches


def _clone(x: Any) -> Any:
    return x.detach().clone() if isinstance(x, torch.Tensor) else x


@torch.no_grad()
def recorded_calibration(model: nn.Module, calib_func: Callable[[nn.Module], Any]) -> list:
    """The inputs `model` receives while `calib_func(model)` runs (once, the model in eval mode), as calibration batches:
    a dict of keyword inputs, a tuple of positional ones, or a `Call` of both."""
    calls: list = []

    def record(module, args, kwargs):
        args, kwargs = tree_map(_clone, tuple(args)), tree_map(_clone, dict(kwargs))
        calls.append(kwargs if kwargs and not args else args if not kwargs else Call(args, kwargs))

    hook = model.register_forward_pre_hook(record, with_kwargs=True)
    was_training = model.training
    model.eval()
    try:
        calib_func(model)
    except Exception as exc:
        raise ValueError(f"calib_func failed on the FP32 model: {type(exc).__name__}: {exc}") from exc
    finally:
        hook.remove()
        model.train(was_training)
    if not calls:
        raise ValueError("calib_func(model) ran without calling the model: it must run the model it is given on calibration data")
    return calls


def _cpu(x: Any) -> Any:
    return tree_map(lambda t: t.cpu() if isinstance(t, torch.Tensor) else t, x)


class MetricEvaluation:
    """eval_fn from `eval_dataloader` and a metric: the metric of the model's outputs against the labels, over every
    batch. Picklable (it goes to the evaluators with the model)."""

    def __init__(self, loader: Iterable, metric: MetricSpec):
        self.loader, self.metric = loader, metric

    def samples(self) -> int | None:
        """The samples one pass of the loader gives, where it is a torch DataLoader that says so and the metric is the
        built-in topk (a mean of one 0-or-1 score per sample); None: the evaluation is read to its end."""
        loader = self.loader
        if self.metric.cls is not TopK or self.metric.instance is not None or not isinstance(loader, torch.utils.data.DataLoader):
            return None
        batch_sampler = loader.batch_sampler
        if not isinstance(batch_sampler, torch.utils.data.BatchSampler) or batch_sampler.drop_last:
            return None
        try:
            return len(batch_sampler.sampler) or None
        except TypeError:  # an iterable dataset: no length
            return None

    def __call__(self, model: nn.Module):
        samples = self.samples()
        if samples is not None:
            return self._running(model, samples)
        metric = self.metric.fresh()
        with torch.no_grad():
            for _ in self._updates(model, metric):
                pass
        value = metric.result()
        if isinstance(value, torch.Tensor | float | int) or hasattr(value, "__float__"):
            return float(value)
        raise ValueError(f"the metric's result() must be a scalar, got {value!r}")

    def _updates(self, model: nn.Module, metric: Any):
        """metric.update for each batch; yields each batch's input."""
        for batch in self.loader:
            inputs, label = split(batch)
            if label is None:
                raise ValueError(
                    "The dataloader must include label to measure the metric: eval_dataloader's batches must be "
                    "(input, label) pairs or dicts with a 'label' or 'labels' key"
                )
            metric.update(_cpu(run_batch(model, inputs)), _cpu(label))
            yield inputs

    def _running(self, model: nn.Module, samples: int):
        """topk, batch by batch: Running(correct so far, samples so far, samples)."""
        metric, seen = self.metric.fresh(), 0
        for inputs in self._updates(model, metric):
            given = _batch_size(None, inputs)
            if metric.num_sample - seen != given or metric.num_sample > samples:
                raise RunningError(
                    f"topk counted {metric.num_sample - seen} samples in a batch of {given} inputs ({metric.num_sample} of "
                    f"the loader's {samples} so far): a trial can only stop early where each input has one label"
                )
            seen = metric.num_sample
            yield Running(float(metric.num_correct), seen, samples)


class Unevaluated:
    """eval_fn of a fit without eval_func and eval_dataloader: every model scores 1.0, so the default config is the
    result without being measured (INC 2.6: "Quantize model without tuning!")."""

    def __call__(self, model: nn.Module) -> float:
        return 1.0
