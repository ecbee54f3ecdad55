"""The evaluation `tune` gives the strategy: a config -> the user's eval_fn on the FP32 model with that config."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from ..running import Running, is_running, may_be_cancelled, stop_if_cancelled
from ..space import FP32
from .batches import run_batch
from .lowering import LoweredCache, applied, apply_config
from .modules import module_bytes
from .qparams import Calibration
from .shared import SharedModel

# The lowered modules an evaluator keeps between trials, as a fraction of the FP32 model's bytes: a little more than
# one config with every op at int8 holds (a quarter of the model, less its embeddings and norms), so that the trials
# going on from a config (conservative's op-wise fallbacks) rebuild only what changes.
LOWERED_CACHE = 0.25


def _malloc_trim():
    """glibc's malloc_trim, or None where there is none: it hands the heap's free pages back to the system."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim() if sys.platform.startswith("linux") else None


def release_freed_memory() -> None:
    """Hand what a trial freed back to the system (glibc keeps freed blocks of up to 32 MiB in its heap, which a
    lowered op's copy of a weight and a trial's activations are): an evaluator's memory in use stays what it holds."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def check_lowered_cache(lowered_cache: object) -> None:
    """Refuse a `lowered_cache` that is not a fraction of the model's size (a number >= 0), naming the argument."""
    if isinstance(lowered_cache, bool) or not (isinstance(lowered_cache, int | float) and lowered_cache >= 0):
        raise ValueError(f"lowered_cache is the lowered modules' budget as a fraction of the model's bytes (>= 0), got {lowered_cache!r}")


class ModelEvaluation:
    """config -> eval_fn(the model with that config), with the calibration chosen before the run.

    Each trial is applied in place (`lowering.applied`): the lowered modules of the config are
    swapped into the model for the evaluation and the FP32 ones swapped back after it, so a trial
    costs what its lowered ops cost, never a copy of the model. `eval_fn` gets the model itself:
    it must not change it (its weights are shared, see below), and what it gets is only valid
    during the call. Each op's lowered module is built once and kept in a `LoweredCache` of at
    most `lowered_cache` times the FP32 model's bytes (least recently used ones evicted; `cache`,
    and `cache.stats()`).

    Picklable, and pickled once for all of a node's evaluators: the model travels as a
    `shared.SharedModel`, whose weights Ray's object store keeps once per node, shared read-only
    by every evaluator there; the eval function and the calibration travel with it. The evaluator
    calls `prepare` once with its device and CPU count; `eval_fn` gets the model on that device.
    `warmup`: one input batch the evaluator runs through the FP32 model when it is prepared, so
    that the first trial does not pay for torch's first kernels.

    An `eval_fn` that yields `running.Running` after each batch is read batch by batch by whoever
    runs the trial (so that a trial that surely fails the goal stops there, see `running`); the
    config stays applied until it ends or is closed. Where the trial may be cancelled (an
    evaluator's, `running.cancellable`), the model looks before each forward call, so that an
    `eval_fn` that does not yield stops too once its config is moot.
    """

    def __init__(
        self,
        model: nn.Module,
        eval_fn: Callable[[nn.Module], float],
        calibration: Calibration,
        warmup=None,
        lowered_cache: float = LOWERED_CACHE,
    ):
        check_lowered_cache(lowered_cache)
        self.model = model
        self.eval_fn = eval_fn
        self.calibration = calibration
        self.warmup = warmup
        self.lowered_cache = lowered_cache
        self.cache = self._new_cache()

    def _new_cache(self) -> LoweredCache:
        return LoweredCache(int(self.lowered_cache * module_bytes(self.model)))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["model"] = SharedModel(self.model)
        state["cache"] = None  # built again where it runs
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.model = state["model"].model
        self.cache = self._new_cache()

    def prepare(self, device: str, num_threads: int) -> None:
        """Run on `device` with `num_threads` torch threads: called once by the evaluator that holds this evaluation,
        when it starts."""
        torch.set_num_threads(num_threads)
        self.model = self.model.to(device)
        self.cache = self._new_cache()
        if self.warmup is not None:
            with torch.no_grad():
                try:
                    run_batch(self.model.eval(), self.warmup)
                except Exception:  # a warm-up only: the trials say what is wrong, if anything is
                    pass

    def build(self, config: Mapping[str, str]) -> nn.Module:
        """A model of its own with `config` applied (a copy of the FP32 model's other modules): the tuned model."""
        return apply_config(self.model, config, self.calibration, self.cache)

    def __call__(self, config: Mapping[str, str]) -> float | Iterator[Running]:
        # The modules of this config stay while it runs; those of earlier trials go first when the budget is reached.
        lowered = {(name, precision) for name, precision in config.items() if precision != FP32}
        trial = contextlib.ExitStack()
        try:
            trial.enter_context(self.cache.pin(lowered))
            model = trial.enter_context(applied(self.model, config, self.calibration, self.cache))
            if may_be_cancelled():  # an evaluator's speculative trial: it stops before a forward call once moot
                trial.callback(model.register_forward_pre_hook(_stop_if_cancelled).remove)
            with torch.no_grad():
                value = self.eval_fn(model)
        except BaseException:
            trial.close()
            release_freed_memory()
            raise
        if is_running(value):
            return self._running(value, trial)
        trial.close()
        release_freed_memory()
        return value

    @staticmethod
    def _running(values: Iterator[Running], trial: contextlib.ExitStack) -> Iterator[Running]:
        """`values`, read with the config applied and no autograd; the model is whole again once it ends or is closed."""
        end = object()
        try:
            while True:
                with torch.no_grad():
                    step = next(values, end)
                if step is end:
                    return
                yield step
        finally:
            close = getattr(values, "close", None)
            if close is not None:
                close()
            trial.close()
            release_freed_memory()


@torch.compiler.disable
def _stop_if_cancelled(module: nn.Module, args) -> None:
    """A forward pre-hook: the trial stops before this call once it is cancelled (never traced by torch.compile)."""
    stop_if_cancelled()
