"""A model as deployed: compiled for inference, and checked before it is trusted.

`compile_model` is `torch.compile` with what int8 kernels need (inductor freezing, under no_grad).
Two things make the compiled model trustworthy:

- Inductor's x86 int8 lowering fuses `y = other + qlinear(x)` into oneDNN's int8 linear with a `sum`
  post-op that writes the result into `other`'s memory. Its check of whether that may be done in
  place (`_qlinear_binary_can_be_inplace`, torch/_inductor/fx_passes/mkldnn_fusion.py, torch 2.13
  and 2.14) never asks whether `other` is a graph input (the caller's tensor: a residual block
  writes into its input, and is wrong from its second call) or a frozen weight (a parameter added
  to a linear's output is overwritten: every later call is wrong). `inplace_safe_fusions()` makes
  that check say no for both; the add stays fused into the int8 kernel, out of place.
- Whatever else a compiler gets wrong shows when the compiled model is called several times on the
  same tensors: `check_deployed` calls it three times on copies of each batch and compares the
  outputs between calls, the inputs before and after, and the outputs against the eager model's.
  A `CompiledModel` runs that check on every input signature it meets for the first time (that is
  when it compiles, seconds, against which the check costs a few calls), and raises
  `DeploymentError` naming what differed: never a silently wrong model.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_leaves

from ..errors import DeploymentError
from ..running import is_running, to_end
from .batches import Inputs, as_inputs
from .modules import model_device

RECOMPILE_LIMIT = 256  # compilations of one forward (one per compiled model and input shape) before torch gives up
CHECK_CALLS = 3  # calls of the compiled model on the same tensors, per checked batch
# The compiled model's floating outputs may differ from the eager model's by this much (relative L2 error of each
# output). Compiled bf16 keeps FP32 between the ops it fuses where eager rounds after each, and int8 kernels round
# and accumulate in their own order: measured up to 0.047 on the test matrix's tuned models (tiny random ViT, bf16
# and int8), about as far as the eager bf16 model is from FP32. Outputs of a model that writes into its input drift
# by 0.2 from the second call; those of a wrong kernel (a scale off by 2x) by more than 0.3.
EAGER_TOLERANCE = 0.1
REPEAT_TOLERANCE = 1e-6  # between calls on the same tensors: bitwise equal in every case measured on a CPU


# ---------------------------------------------------------------- the narrow fix of inductor's in-place int8 sum

_patch_lock = threading.Lock()
_patch_depth = 0
_original_check = None


def _writes_into_graph_tensor(other) -> bool:
    """Whether the inductor tensor `other` is a graph input or a constant (a frozen weight): memory the graph does not own."""
    from torch._inductor import ir

    data = getattr(other, "data", None)
    if isinstance(data, ir.StorageBox):
        data = data.data
    return isinstance(data, ir.InputBuffer)  # graph inputs, frozen weights (ConstantBuffer) and donated buffers


def _safe_check(other) -> bool:
    return not _writes_into_graph_tensor(other) and _original_check(other)


@contextlib.contextmanager
def inplace_safe_fusions() -> Iterator[bool]:
    """While in the block, inductor never fuses an int8 linear's residual add in place into a graph input or a frozen
    weight (see the module's docstring). Yields whether the fix applies to this torch (False where inductor has no such
    check: `check_deployed` still catches a model that writes where it must not)."""
    global _patch_depth, _original_check
    try:
        from torch._inductor.fx_passes import mkldnn_fusion
    except ImportError:  # a torch without inductor's CPU fusions
        yield False
        return
    if not hasattr(mkldnn_fusion, "_qlinear_binary_can_be_inplace"):
        yield False
        return
    with _patch_lock:
        if _patch_depth == 0:
            _original_check = mkldnn_fusion._qlinear_binary_can_be_inplace
            mkldnn_fusion._qlinear_binary_can_be_inplace = _safe_check
        _patch_depth += 1
    try:
        yield True
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                mkldnn_fusion._qlinear_binary_can_be_inplace = _original_check
                _original_check = None


# ---------------------------------------------------------------- the check


@dataclass(frozen=True)
class DeployedCheck:
    """What `check_deployed` compared: batches, calls of the compiled model per batch, the largest relative difference
    between its calls and against the eager model, and the seconds it took (compilation included)."""

    batches: int
    calls: int
    repeat_difference: float
    eager_difference: float
    seconds: float

    def text(self) -> str:
        return (
            f"checked on {self.batches} batch{'es' if self.batches != 1 else ''}, {self.calls} calls each: inputs unchanged, "
            f"calls equal (max relative difference {self.repeat_difference:.1e}), {self.eager_difference:.1e} from the eager "
            f"model (tolerance {EAGER_TOLERANCE:g}), {self.seconds:.2f} s"
        )


def _floating(out) -> list[torch.Tensor]:
    return [t.detach() for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]


def relative_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (0 for two equal tensors, inf for other shapes or non-finite values)."""
    if a.shape != b.shape:
        return math.inf
    a, b = a.double(), b.double()
    num, den = float((a - b).norm()), float(b.norm())
    if math.isnan(num):
        return 0.0 if torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()) else math.inf
    return num / den if den > 0 else (0.0 if num == 0 else math.inf)


def _copy(x, device: torch.device):
    """A copy of `x`'s tensors on `device` (nested tuples, lists and dicts followed), the rest as it is."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device, copy=True)
    if isinstance(x, dict):
        return {k: _copy(v, device) for k, v in x.items()}
    if isinstance(x, tuple | list):
        return type(x)(_copy(v, device) for v in x)
    return x


def _named_leaves(inputs: Inputs) -> list[tuple[str, object]]:
    args, kwargs = inputs
    named = [(f"#{i}", leaf) for i, a in enumerate(args) for leaf in tree_leaves(a)]
    return named + [(repr(k), leaf) for k, v in kwargs.items() for leaf in tree_leaves(v)]


def _input_changes(before: Inputs, after: Inputs) -> list[str]:
    """The inputs that differ between `before` (a copy taken before the calls) and `after` (what the calls were given)."""
    changes = []
    for (name, x), (_, y) in zip(_named_leaves(before), _named_leaves(after), strict=True):
        if isinstance(x, torch.Tensor) and not torch.equal(x, y):
            delta = f" (max change {float((y.double() - x.double()).abs().max()):.3g})" if x.is_floating_point() else ""
            changes.append(f"input {name} was written into{delta}")
    return changes


def check_deployed(compiled: Callable[..., object], eager: nn.Module, inputs: Iterable[Inputs], calls: int = CHECK_CALLS) -> DeployedCheck:
    """Call `compiled` `calls` times on a copy of each of `inputs` (positional and keyword inputs of one call; tensors
    are copied to the eager model's device) and `eager` once: every call must leave its inputs as they were, give the
    outputs of the first call, and be within `EAGER_TOLERANCE` of the eager model's. Raises DeploymentError naming
    what differed."""
    started = time.perf_counter()
    device = model_device(eager)
    worst_repeat = worst_eager = 0.0
    n = 0
    with torch.no_grad():
        for one in inputs:
            n += 1
            pristine = _copy(one, device)
            args, kwargs = _copy(one, device)
            expected = _floating(eager(*args, **kwargs))
            given = _copy(one, device)
            first: list[torch.Tensor] | None = None
            problems: list[str] = []
            for call in range(1, calls + 1):
                out = _floating(compiled(*given[0], **given[1]))
                problems += [f"call {call}: {change}" for change in _input_changes(pristine, given)]
                if len(out) != len(expected):
                    problems.append(f"call {call} gave {len(out)} floating outputs, the eager model {len(expected)}")
                    break
                if first is None:
                    first = [o.clone() for o in out]
                else:
                    diff = max((relative_distance(o, f) for o, f in zip(out, first, strict=True)), default=0.0)
                    worst_repeat = max(worst_repeat, diff)
                    if diff > REPEAT_TOLERANCE:
                        problems.append(f"call {call}'s output differs from call 1's by {diff:.3g} (relative) on the same inputs")
                diff = max((relative_distance(o, e) for o, e in zip(out, expected, strict=True)), default=0.0)
                worst_eager = max(worst_eager, diff)
                if diff > EAGER_TOLERANCE:
                    problems.append(f"call {call}'s output is {diff:.3g} (relative) from the eager model's (tolerance {EAGER_TOLERANCE:g})")
                if problems:
                    break
            if problems:
                raise DeploymentError(
                    f"the compiled model is wrong on batch {n}: {'; '.join(problems)}. torch.compile got this model wrong "
                    "(see docs/deployment.md): deploy the eager model (res.model) instead, and report the model"
                )
    return DeployedCheck(n, calls, worst_repeat, worst_eager, time.perf_counter() - started)


# ---------------------------------------------------------------- the compiled model


def _signature(args: tuple, kwargs: dict) -> tuple:
    """What makes a call compile anew: the inputs' structure, each tensor's shape, dtype and device, other values."""
    leaves, spec = tree_flatten((args, kwargs))

    def key(x):
        if isinstance(x, torch.Tensor):
            return tuple(x.shape), x.dtype, x.device
        return repr(x) if isinstance(x, int | float | str | bool | None) else type(x)

    return str(spec), tuple(key(x) for x in leaves)


class CompiledModel(nn.Module):
    """`model` under `torch.compile`, called with inductor freezing on and autograd off (inference only), checked.

    Freezing turns weights into constants, which lets inductor fold BatchNorm, pre-pack weights and
    match the int8 patterns onto oneDNN's int8 kernels. It applies while a call compiles, so every
    call runs inside the setting (with `inplace_safe_fusions`). Shapes are static: a new input shape
    compiles again (oneDNN's int8 convolutions under dynamic shapes fail torch 2.13's stride checks),
    and the first call with each new input signature first runs `check_deployed` on copies of its
    inputs (`check=False`: never). Each compiled model of one class compiles the class's forward
    again (its frozen weights are its own), so the calls lift torch's limit of 8 compilations per
    function, past which it would silently run eagerly. Attributes the wrapper does not have are the
    model's (`compiled.config`), so code written for the model takes the compiled one.
    """

    def __init__(self, model: nn.Module, check: bool = True):
        super().__init__()
        self.model = model
        self._compiled = torch.compile(model, dynamic=False)  # int8 kernels are matched on static shapes
        self._check = check
        self._checked: set[tuple] = set()
        self.checks: list[DeployedCheck] = []  # the checks run so far: one per input signature checked

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or name == "model":
                raise
            return getattr(super().__getattr__("model"), name)

    def _run(self, *args, **kwargs):
        """One call of the compiled model, unchecked."""
        import torch._dynamo.config as dynamo_config
        import torch._inductor.config as inductor_config

        limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
        with torch.no_grad(), inductor_config.patch(freezing=True), dynamo_config.patch(recompile_limit=limit), inplace_safe_fusions():
            return self._compiled(*args, **kwargs)

    def check(self, batches: Iterable) -> DeployedCheck:
        """Run `check_deployed` now on `batches` (as calibration takes them: a tensor, a tuple or list of positional
        inputs, a dict of keyword inputs); calls with their signatures are not checked again."""
        inputs = [as_inputs(b) for b in batches]
        result = check_deployed(self._run, self.model, inputs)
        self.checks.append(result)
        self._checked.update(_signature(*one) for one in inputs)
        return result

    def forward(self, *args, **kwargs):
        if self._check and (signature := _signature(args, kwargs)) not in self._checked:
            self.checks.append(check_deployed(self._run, self.model, [(args, kwargs)]))
            self._checked.add(signature)
        return self._run(*args, **kwargs)


def compile_model(model: nn.Module, check: bool = True) -> CompiledModel:
    """`model` compiled for inference on the device it is on, as `ModelTuneResult.compile()` compiles a tuned model:
    checked on the first call with each new input signature (see `CompiledModel`)."""
    return CompiledModel(model.eval(), check=check)


# ---------------------------------------------------------------- the accuracy as deployed


@dataclass(frozen=True)
class DeployedAccuracy:
    """The user's eval_fn on the compiled tuned model (what production sees) beside the eager tuned model's accuracy,
    judged against the goal: `meets` None where it could not be measured, and then `error` says why."""

    eager: float | None
    compiled: float | None
    goal: float
    meets: bool | None
    error: str | None = None
    check: DeployedCheck | None = None

    @property
    def verdict(self) -> str:
        if self.meets is None:
            return f"not measured: {self.error}"
        return f"{'meets' if self.meets else 'MISSES'} the goal {self.goal:.6g}"

    def text(self) -> str:
        eager = "-" if self.eager is None else f"{self.eager:.6g}"
        compiled = "-" if self.compiled is None else f"{self.compiled:.6g}"
        return f"accuracy as deployed (compiled): {compiled}, eager {eager}; {self.verdict}"


def checked(compiled: CompiledModel, batches: Iterable) -> str | None:
    """Check `compiled` on `batches` now (`CompiledModel.check`); what failed, in words, or None. A failure warns."""
    try:
        compiled.check(batches)
    except DeploymentError as exc:
        warnings.warn(f"the compiled tuned model failed its check: {exc}", RuntimeWarning, stacklevel=2)
        return str(exc)
    return None


def deployed_accuracy(
    compiled: CompiledModel,
    eval_fn: Callable[[nn.Module], float],
    eager: float | None,
    goal: float,
    meets: Callable[[float], bool],
    failure: str | None = None,
) -> DeployedAccuracy:
    """`eval_fn(compiled)` judged against `goal`, unless the compiled model failed its check (`failure`, see `checked`).
    An eval_fn that fails on the compiled model is recorded as not measured, with why and a warning: the deployed
    figure is a measure of the result, not a condition of it."""
    check = compiled.checks[0] if compiled.checks else None
    if failure is not None:
        return DeployedAccuracy(eager, None, goal, None, f"the compiled model failed its check: {failure}", check)
    try:
        with torch.no_grad():
            value = eval_fn(compiled)
            value = float(to_end(value, "eval_fn on the compiled model") if is_running(value) else value)
    except Exception as exc:
        error = f"eval_fn failed on the compiled model: {type(exc).__name__}: {exc}"
        warnings.warn(error, RuntimeWarning, stacklevel=2)
        return DeployedAccuracy(eager, None, goal, None, error, check)
    return DeployedAccuracy(eager, value, goal, bool(meets(value)), check=check)
