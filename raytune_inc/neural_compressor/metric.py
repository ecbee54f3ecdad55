"""Neural Compressor 2.6's PyTorch metrics: `METRICS("pytorch")[name]`, `Metric(name=..., **kwargs)`, and the forms
`eval_metric` takes (a built-in metric, a `Metric`, a dict such as `{"topk": 1}`, or any object with
`reset()`, `update(preds, labels)` and `result()`).

The built-ins compute what INC 2.6's compute (`topk`: the share of samples whose label is among the
k highest scores; `Accuracy`: argmax against sparse labels, or exact matches for binary and
multilabel outputs; `Loss`: the sum of the predictions over the number of samples; `MAE`/`MSE`/`RMSE`:
errors of the predictions against the labels, over every element; `F1`: the token-overlap F1 of each
update, averaged), on tensors, numpy arrays or lists. They also read a transformers `ModelOutput` as
its `logits` and a tuple output as its first element (INC 2.6's fail on both).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FRAMEWORKS = ("pytorch", "pytorch_fx", "pytorch_ipex")


def _array(x: Any) -> np.ndarray:
    """A tensor, array, list or number as a numpy array (floating tensors as float64)."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            return (x.double() if x.is_floating_point() else x).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return np.asarray(x)


def predictions(output: Any) -> Any:
    """A model's output as the scores a metric compares: a `ModelOutput`'s (or dict's) `logits`, a tuple's first element."""
    if isinstance(output, Mapping) and "logits" in output:
        return output["logits"]
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    if isinstance(output, tuple) and output:
        return output[0]
    return output


class BaseMetric:
    """What every metric has: `reset()`, `update(preds, labels)`, `result()`."""

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, preds: Any, labels: Any = None) -> None:
        raise NotImplementedError

    def result(self) -> float:
        raise NotImplementedError


class TopK(BaseMetric):
    """topk (INC's GeneralTopK): the share of samples whose label is among the `k` highest scores. Scores are (N, C) or
    (C,); labels (N,), (N, 1) or one-hot (N, C)."""

    def __init__(self, k: int = 1):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"topk's k must be an int >= 1, got {k!r}")
        self.k = k
        self.reset()

    def reset(self) -> None:
        self.num_correct, self.num_sample = 0, 0

    def update(self, preds: Any, labels: Any = None) -> None:
        scores = _array(predictions(preds))
        scores = scores.reshape(1, -1) if scores.ndim == 1 else scores.reshape(scores.shape[0], -1)
        labels = _array(labels)
        if labels.ndim == 0:
            labels = labels.reshape(1)
        if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot
            labels = labels.argmax(-1)
        labels = labels.reshape(-1)
        if len(labels) != len(scores):
            raise ValueError(f"topk: {len(labels)} labels for {len(scores)} predictions (labels batch size should same with preds)")
        top = np.argsort(scores, axis=-1, kind="stable")[:, -self.k :]
        self.num_correct += int(sum(int(label) in row for row, label in zip(top.tolist(), labels.tolist(), strict=True)))
        self.num_sample += len(labels)

    def result(self) -> float:
        return 0.0 if self.num_sample == 0 else self.num_correct / self.num_sample


class Accuracy(BaseMetric):
    """Accuracy: argmax of (N, C) scores against (N,) labels (multiclass); equal values for 1-D or (N, 1) outputs
    (binary); equal elements for (N, C) against (N, C) (multilabel)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.correct, self.sample = 0, 0

    def update(self, preds: Any, labels: Any = None) -> None:
        preds, labels = _array(predictions(preds)), _array(labels)
        if preds.ndim == labels.ndim + 1:
            if preds.shape[-1] == 1:  # binary, one score column
                preds = preds.reshape(labels.shape)
            else:
                preds = preds.argmax(axis=-1)
        elif preds.ndim != labels.ndim:
            raise ValueError(f"Accuracy: predictions of shape {preds.shape} against labels of shape {labels.shape}")
        if preds.shape != labels.shape:
            raise ValueError(f"Accuracy: predictions of shape {preds.shape} against labels of shape {labels.shape}")
        self.correct += int((preds == labels).sum())
        self.sample += int(labels.size)

    def result(self) -> float:
        return 0.0 if self.sample == 0 else self.correct / self.sample


class Loss(BaseMetric):
    """Loss: the sum of the predictions (per-sample losses) over the number of labels seen. Lower is better: give
    `AccuracyCriterion(higher_is_better=False)`."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sum, self.sample = 0.0, 0

    def update(self, preds: Any, labels: Any = None) -> None:
        preds, labels = _array(predictions(preds)), _array(labels)
        self.sum += float(preds.sum())
        self.sample += int(labels.shape[0]) if labels.ndim else 1

    def result(self) -> float:
        return 0.0 if self.sample == 0 else self.sum / self.sample


class _Errors(BaseMetric):
    """Element-wise errors of the predictions against the labels (same shapes), over every element seen."""

    def __init__(self, compare_label: bool = True):
        if compare_label is not True:
            raise ValueError(
                f"{type(self).__name__}(compare_label=False) compares the tuned model's outputs with the FP32 model's, which "
                "this metric does not see here; give an eval_func that computes it (e.g. against saved FP32 outputs)"
            )
        self.compare_label = True
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, preds: Any, labels: Any = None) -> None:
        preds, labels = _array(predictions(preds)), _array(labels)
        if preds.shape != labels.shape:
            raise ValueError(f"Shape mismatch, label shape {labels.shape} vs pred shape {preds.shape}")
        self.total += float(self._error(labels.astype(np.float64) - preds.astype(np.float64)).sum())
        self.count += int(labels.size)

    def _error(self, diff: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def result(self) -> float:
        return 0.0 if self.count == 0 else self.total / self.count


class MAE(_Errors):
    """Mean absolute error of the predictions against the labels."""

    def _error(self, diff: np.ndarray) -> np.ndarray:
        return np.abs(diff)


class MSE(_Errors):
    """Mean squared error of the predictions against the labels."""

    def _error(self, diff: np.ndarray) -> np.ndarray:
        return diff**2


class RMSE(MSE):
    """The square root of MSE."""

    def result(self) -> float:
        return math.sqrt(super().result())


def f1_score(prediction: Sequence, ground_truth: Sequence) -> float:
    """The token-overlap F1 of two sequences of tokens (SQuAD's, as INC 2.6 computes it)."""
    common = Counter(prediction) & Counter(ground_truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction), same / len(ground_truth)
    return 2 * precision * recall / (precision + recall)


class F1(BaseMetric):
    """F1: the token-overlap F1 of each update's predictions against its labels (sequences of tokens), averaged over
    the updates."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.scores: list[float] = []

    def update(self, preds: Any, labels: Any = None) -> None:
        def tokens(x: Any) -> list:
            return _array(predictions(x)).reshape(-1).tolist() if not isinstance(x, list | tuple) else list(x)

        self.scores.append(f1_score(tokens(preds), tokens(labels)))

    def result(self) -> float:
        return 0.0 if not self.scores else float(np.mean(self.scores))


BUILTINS: dict[str, type[BaseMetric]] = {"F1": F1, "Accuracy": Accuracy, "Loss": Loss, "MAE": MAE, "RMSE": RMSE, "MSE": MSE, "topk": TopK}


class METRICS:
    """`METRICS("pytorch")[name]`: the class of a built-in metric (`METRICS("pytorch")["topk"](k=1)`)."""

    def __init__(self, framework: str):
        if framework not in FRAMEWORKS:
            raise ValueError(f"framework {framework!r}: raytune-inc has PyTorch's metrics only ({', '.join(FRAMEWORKS)})")
        self.metrics = dict(BUILTINS)

    def __getitem__(self, name: str) -> type[BaseMetric]:
        if name not in self.metrics:
            raise ValueError(f"metric {name!r}: only support metrics in {sorted(self.metrics)} (INC 2.6's ROC is not here)")
        return self.metrics[name]

    def register(self, name: str, metric_cls: type) -> None:
        if name in self.metrics:
            raise ValueError(f"registered metric name {name!r} already exists")
        self.metrics[name] = metric_cls


class Metric:
    """INC 2.6's metric description: `name` of a built-in with its `kwargs` (`Metric(name="topk", k=1)`), or your own
    class as `metric_cls`, made with `kwargs`."""

    def __init__(self, name: str = "user_metric", metric_cls: type | None = None, **kwargs: Any):
        self.name, self.metric_cls, self.kwargs = name, metric_cls, kwargs


def _has_protocol(obj: Any) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("reset", "update", "result"))


def resolve(eval_metric: Any) -> MetricSpec:
    """What `eval_metric` describes, as a picklable recipe of the metric each evaluation starts from; ValueError naming
    the form it takes otherwise."""
    if isinstance(eval_metric, Metric):
        if eval_metric.metric_cls is None:
            return MetricSpec(METRICS("pytorch")[eval_metric.name], (), eval_metric.kwargs)
        return MetricSpec(eval_metric.metric_cls, (), eval_metric.kwargs)
    if isinstance(eval_metric, Mapping):
        names = [k for k in eval_metric if k not in ("weight", "higher_is_better")]
        if len(names) != 1:
            raise ValueError(
                f"eval_metric {dict(eval_metric)!r}: give one metric (several, weighted, are not here; an eval_func can combine them)"
            )
        name, value = names[0], eval_metric[names[0]]
        cls = METRICS("pytorch")[name]
        if isinstance(value, Mapping):
            return MetricSpec(cls, (), dict(value))
        return MetricSpec(cls, (value,), {})
    if isinstance(eval_metric, type):
        raise ValueError(f"eval_metric is the class {eval_metric.__name__}: give an instance (e.g. {eval_metric.__name__}())")
    if _has_protocol(eval_metric):
        return MetricSpec(None, (), {}, eval_metric)
    raise ValueError(
        f"eval_metric {eval_metric!r}: give a metric (METRICS('pytorch')['topk']()), Metric(name=...), a dict such as "
        "{'topk': 1}, or an object with reset(), update(preds, labels) and result()"
    )


class MetricSpec:
    """A metric to start each evaluation from: made from `cls(*args, **kwargs)`, or the user's own `instance`, reset."""

    def __init__(self, cls: type | None, args: tuple, kwargs: dict, instance: Any = None):
        self.cls, self.args, self.kwargs, self.instance = cls, args, kwargs, instance
        self.fresh()  # a wrong argument fails here, before any work

    def fresh(self) -> Any:
        metric = self.instance if self.instance is not None else self.cls(*self.args, **self.kwargs)
        if not _has_protocol(metric):
            raise ValueError(f"{type(metric).__name__} must have reset(), update(preds, labels) and result()")
        metric.reset()
        return metric
