"""Neural Compressor 2.6's PyTorch configs, with its names, fields and defaults, and what each means here.

`PostTrainingQuantConfig`, `MixedPrecisionConfig`, `TuningCriterion` and `AccuracyCriterion` take
the arguments INC 2.6's take and read back as INC's do (`conf.approach` gives
"post_training_static_quant"). A value INC 2.6 refuses is refused (ValueError naming the field and
the values it takes, where INC asserted). A value INC accepts but raytune-inc cannot honour (another
strategy, a recipe, another backend or device) is accepted here and refused by `fit` before any
work, with the setting to use instead (`unsupported`): never a silent substitute.
docs/neural_compressor.md has the table of what maps to what.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from ..criterion import AccuracyCriterion as _Criterion

STRATEGIES = ("basic", "mse", "bayesian", "random", "exhaustive", "sigopt", "tpe", "mse_v2", "hawq_v2")
OBJECTIVES = ("performance", "accuracy", "modelsize", "footprint")
BACKENDS = ("default", "itex", "ipex", "onnxrt_trt_ep", "onnxrt_cuda_ep", "onnxrt_dnnl_ep", "onnxrt_dml_ep")
DEVICES = ("cpu", "gpu", "npu", "xpu")
DOMAINS = ("auto", "cv", "object_detection", "nlp", "recommendation_system")
QUANT_FORMATS = ("default", "QDQ", "QOperator")
APPROACHES = {
    "static": "post_training_static_quant",
    "dynamic": "post_training_dynamic_quant",
    "auto": "post_training_auto_quant",
    "weight_only": "post_training_weight_only",
}
MIX_PRECISIONS = ("bf16", "fp16")
# The recipes INC 2.6 fills in, with its defaults; a recipe set to anything else is one raytune-inc does not have.
RECIPE_DEFAULTS: dict[str, Any] = {
    "smooth_quant": False,
    "smooth_quant_args": {},
    "layer_wise_quant": False,
    "layer_wise_quant_args": {},
    "fast_bias_correction": False,
    "weight_correction": False,
    "gemm_to_matmul": True,
    "graph_optimization_level": None,
    "first_conv_or_matmul_quantization": True,
    "last_conv_or_matmul_quantization": True,
    "pre_post_process_quantization": True,
    "add_qdq_pair_to_weight": False,
    "optypes_to_exclude_output_quant": [],
    "dedicated_qdq_pair": False,
    "rtn_args": {},
    "awq_args": {},
    "gptq_args": {},
    "teq_args": {},
    "autoround_args": {},
}
# The quantization scheme raytune-inc's int8 has (torchao's X86InductorQuantizer defaults): what an op dict may restate.
OUR_SCHEME = {
    "weight": {"granularity": {"per_channel"}, "scheme": {"sym"}, "algorithm": {"minmax"}, "bits": {8}},
    "activation": {"granularity": {"per_tensor"}, "scheme": {"asym"}},
}
WEIGHT_DTYPES = {"int", "int4", "nf4", "fp4", "fp4_e2m1_bnb", "fp4_e2m1", "int8", "uint8", "fp32", "bf16", "fp16"}
ACTIVATION_DTYPES = {"int8", "uint8", "fp32", "bf16", "fp16", "None"}


def _one_of(name: str, value: Any, choices: Sequence[str]) -> Any:
    """`value` (a str, or a list of str as INC also takes) if every item is one of `choices`, else ValueError."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, str) or item not in choices:
            raise ValueError(f"{name}={item!r} is not one of INC 2.6's values: {', '.join(choices)}")
    return value


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


class AccuracyCriterion:
    """INC 2.6's accuracy criterion: `higher_is_better`, `criterion` ("relative" or "absolute"), `tolerable_loss`."""

    def __init__(self, higher_is_better: bool = True, criterion: str = "relative", tolerable_loss: float = 0.01):
        if not isinstance(higher_is_better, bool):
            raise ValueError(f"higher_is_better must be True or False, got {higher_is_better!r}")
        self.higher_is_better = higher_is_better
        self.criterion = _one_of("criterion", criterion, ("relative", "absolute"))
        if isinstance(tolerable_loss, bool) or not isinstance(tolerable_loss, numbers.Real):
            raise ValueError(f"tolerable_loss must be a number, got {tolerable_loss!r}")
        self.tolerable_loss = float(tolerable_loss)

    @property
    def relative(self) -> float | None:
        return self.tolerable_loss if self.criterion == "relative" else None

    @relative.setter
    def relative(self, value: float) -> None:
        self.criterion, self.tolerable_loss = "relative", float(value)

    @property
    def absolute(self) -> float | None:
        return self.tolerable_loss if self.criterion == "absolute" else None

    @absolute.setter
    def absolute(self, value: float) -> None:
        self.criterion, self.tolerable_loss = "absolute", float(value)

    def keys(self) -> tuple[str, ...]:
        return ("higher_is_better", "criterion", "tolerable_loss")

    def __getitem__(self, item: str) -> Any:
        return getattr(self, item)

    def __str__(self) -> str:
        return self.criterion

    def ours(self) -> _Criterion:
        """raytune-inc's criterion for this one (its goal: baseline ∓ |baseline|·loss, or baseline ∓ loss)."""
        return _Criterion(self.tolerable_loss, self.criterion, self.higher_is_better)


class TuningCriterion:
    """INC 2.6's tuning criterion: `strategy`, `strategy_kwargs`, `timeout` (seconds, 0: none), `max_trials`,
    `objective`."""

    def __init__(
        self,
        strategy: str = "basic",
        strategy_kwargs: dict | None = None,
        timeout: float = 0,
        max_trials: int = 100,
        objective: str | list | dict = "performance",
    ):
        self.strategy = _one_of("strategy", strategy, STRATEGIES)
        self.strategy_kwargs = strategy_kwargs
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
            raise ValueError(f"timeout must be a number of seconds (0: none), got {timeout!r}")
        self.timeout = timeout
        if isinstance(max_trials, bool) or not isinstance(max_trials, numbers.Integral):
            raise ValueError(f"max_trials must be an integer, got {max_trials!r}")
        self.max_trials = int(max_trials)
        if isinstance(objective, str):
            objective = [_one_of("objective", objective, OBJECTIVES)]
        elif isinstance(objective, list):
            _one_of("objective", objective, OBJECTIVES)
        elif isinstance(objective, dict):
            _one_of("objective", objective.get("objective", []), OBJECTIVES)
        else:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, a list of them or a dict, got {objective!r}")
        self.objective = objective


class _Common:
    """What the quantization and mixed-precision configs share: device, backend, op dicts, criteria, quant_level."""

    def _common(self, device, backend, op_type_dict, op_name_dict, excluded_precisions, quant_level, accuracy, tuning, example_inputs):
        """The shared fields, checked; None for the criteria or `excluded_precisions` means INC's defaults."""
        accuracy = AccuracyCriterion() if accuracy is None else accuracy
        tuning = TuningCriterion() if tuning is None else tuning
        excluded_precisions = excluded_precisions or []
        self.device = _one_of("device", device, DEVICES)
        self.backend = _one_of("backend", backend, BACKENDS)
        self.op_type_dict = _op_dict("op_type_dict", op_type_dict)
        self.op_name_dict = _op_dict("op_name_dict", op_name_dict)
        if isinstance(excluded_precisions, str):
            excluded_precisions = [excluded_precisions]
        self.excluded_precisions = list(_one_of("excluded_precisions", list(excluded_precisions), MIX_PRECISIONS))
        self.quant_level = quant_level
        if not isinstance(accuracy, AccuracyCriterion):
            raise ValueError(f"accuracy_criterion must be an AccuracyCriterion, got {type(accuracy).__name__}")
        if not isinstance(tuning, TuningCriterion):
            raise ValueError(f"tuning_criterion must be a TuningCriterion, got {type(tuning).__name__}")
        self.accuracy_criterion, self.tuning_criterion = accuracy, tuning
        self.example_inputs = example_inputs

    @property
    def use_bf16(self) -> bool:
        return "bf16" not in self.excluded_precisions

    def unsupported_common(self) -> list[str]:
        """The settings of this config raytune-inc cannot honour, each with what to use instead."""
        out = []
        if _first(self.backend) != "default":
            out.append(f"backend={self.backend!r}: raytune-inc lowers PyTorch modules itself (torchao, inductor); use backend='default'")
        if _first(self.device) != "cpu":
            out.append(
                f"device={self.device!r}: put the model on its device and give workers=Workers(k, num_gpus=...) in fit's keyword "
                "arguments (each evaluator evaluates on its own GPU); device='cpu' otherwise"
            )
        tuning = self.tuning_criterion
        if tuning.strategy_kwargs:
            out.append(f"strategy_kwargs={tuning.strategy_kwargs!r}: the strategies here take none; leave it None")
        objective = tuning.objective if isinstance(tuning.objective, list) else None
        if objective != ["performance"]:
            out.append(
                f"objective={tuning.objective!r}: conservative and auto mixed precision decide by the accuracy goal alone, "
                "preferring the most lowered config (INC 2.6's 'performance'); leave objective='performance'"
            )
        if tuning.timeout < 0:
            out.append(f"timeout={tuning.timeout!r}: give seconds >= 0 (0: none)")
        return out


class PostTrainingQuantConfig(_Common):
    """INC 2.6's post-training quantization config, its arguments and defaults (see the module's docstring)."""

    def __init__(
        self,
        device: str = "cpu",
        backend: str = "default",
        domain: str = "auto",
        recipes: dict | None = None,
        quant_format: str = "default",
        inputs: list | None = None,
        outputs: list | None = None,
        approach: str = "static",
        calibration_sampling_size: int | list = (100,),
        op_type_dict: dict | None = None,
        op_name_dict: dict | None = None,
        reduce_range: bool | None = None,
        example_inputs: Any = None,
        excluded_precisions: list | None = None,
        quant_level: str | int = "auto",
        accuracy_criterion: AccuracyCriterion | None = None,
        tuning_criterion: TuningCriterion | None = None,
        diagnosis: bool = False,
        ni_workload_name: str = "quantization",
    ):
        self._common(
            device,
            backend,
            op_type_dict,
            op_name_dict,
            excluded_precisions,
            quant_level,
            accuracy_criterion,
            tuning_criterion,
            example_inputs,
        )
        self.domain = _one_of("domain", domain, DOMAINS)
        self.quant_format = _one_of("quant_format", quant_format, QUANT_FORMATS)
        self.inputs, self.outputs = list(inputs or []), list(outputs or [])
        if recipes is None:
            recipes = {}
        if not isinstance(recipes, dict):
            raise ValueError("recipes should be a dict.")
        self.recipes = {**RECIPE_DEFAULTS, **recipes}
        self.approach = approach
        sizes = [calibration_sampling_size] if isinstance(calibration_sampling_size, int) else list(calibration_sampling_size)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
            raise ValueError(f"calibration_sampling_size must be a positive int or a list of them, got {calibration_sampling_size!r}")
        self.calibration_sampling_size = sizes
        if reduce_range is not None and not isinstance(reduce_range, bool):
            raise ValueError(f"reduce_range must be None, True or False, got {reduce_range!r}")
        self.reduce_range = reduce_range
        if not isinstance(diagnosis, bool):
            raise ValueError(f"diagnosis must be True or False, got {diagnosis!r}")
        self.diagnosis, self.ni_workload_name = diagnosis, ni_workload_name

    @property
    def approach(self) -> str:
        """INC's long name of the approach: post_training_static_quant, _dynamic_quant, _auto_quant, _weight_only."""
        return self._approach

    @approach.setter
    def approach(self, value: str) -> None:
        if isinstance(value, str):
            value = next((short for short in ("static", "dynamic") if short in value), value)
            value = next((short for short, long in APPROACHES.items() if value == long), value)
        _one_of("approach", value, tuple(APPROACHES))
        self._approach = APPROACHES[value]

    @property
    def short_approach(self) -> str:
        return next(short for short, long in APPROACHES.items() if long == self._approach)

    def unsupported(self) -> list[str]:
        out = self.unsupported_common()
        if self.short_approach == "weight_only":
            out.append("approach='weight_only': weight-only recipes (RTN, AWQ, GPTQ, ...) are not here; use approach='dynamic'")
        on = [k for k, v in self.recipes.items() if k in RECIPE_DEFAULTS and v != RECIPE_DEFAULTS[k]]
        on += [k for k in self.recipes if k not in RECIPE_DEFAULTS]
        if on:
            out.append(
                f"recipes {', '.join(on)}: SmoothQuant, layer-wise and the other recipes are not here; leave recipes at INC's defaults"
            )
        if _first(self.quant_format) != "default":
            out.append(f"quant_format={self.quant_format!r} is ONNX Runtime's; leave quant_format='default'")
        if self.reduce_range:
            out.append("reduce_range=True: int8 here is x86 inductor's full uint8 range; leave reduce_range None")
        if self.diagnosis:
            out.append("diagnosis=True: the diagnosis dumps are not here; `raytune-inc history` and the report show each trial")
        if len(self.calibration_sampling_size) > 1:
            out.append(
                f"calibration_sampling_size={self.calibration_sampling_size}: several sizes are tuned by INC's basic strategy only; "
                "give one"
            )
        if self.quant_level not in ("auto", 0):
            out.append(
                f"quant_level={self.quant_level!r} runs INC's {self.tuning_criterion.strategy!r} strategy, which raytune-inc does not "
                "have (nor basic, mse, bayesian, random, exhaustive, sigopt, tpe, mse_v2, hawq_v2); use quant_level=0 "
                "(conservative) or quant_level='auto' (the default config, then conservative)"
            )
        return out


class MixedPrecisionConfig(_Common):
    """INC 2.6's mixed-precision config: `precisions` ("bf16" by default, or "fp16"; `precision=` is its alias)."""

    def __init__(
        self,
        device: str = "cpu",
        backend: str = "default",
        precisions: str | list = "bf16",
        model_name: str = "",
        inputs: list | None = None,
        outputs: list | None = None,
        quant_level: str | int = "auto",
        tuning_criterion: TuningCriterion | None = None,
        accuracy_criterion: AccuracyCriterion | None = None,
        excluded_precisions: list | None = None,
        op_name_dict: dict | None = None,
        op_type_dict: dict | None = None,
        example_inputs: Any = None,
        **alias: Any,
    ):
        unknown = set(alias) - {"precision"}
        if unknown:
            raise TypeError(f"MixedPrecisionConfig got unexpected keyword arguments {sorted(unknown)}")
        if alias.get("precision"):
            precisions = alias["precision"]
        self._common(
            device,
            backend,
            op_type_dict,
            op_name_dict,
            excluded_precisions,
            quant_level,
            accuracy_criterion,
            tuning_criterion,
            example_inputs,
        )
        if isinstance(precisions, str):
            precisions = [precisions]
        if not isinstance(precisions, list | tuple) or not precisions or any(p not in MIX_PRECISIONS for p in precisions):
            raise ValueError(f"precisions must be 'bf16', 'fp16' or a list of them (INC 2.6's mix precision), got {precisions!r}")
        self.precisions = list(precisions)
        self.model_name = model_name
        self.inputs, self.outputs = list(inputs or []), list(outputs or [])

    @property
    def use_bf16(self) -> bool:
        return "bf16" in self.precisions

    def unsupported(self) -> list[str]:
        out = self.unsupported_common()
        if self.quant_level not in ("auto", 0, 1):
            out.append(f"quant_level={self.quant_level!r}: mix precision takes 'auto', 0 or 1 (all run auto mixed precision here)")
        if not [p for p in self.precisions if p not in self.excluded_precisions]:
            out.append(f"precisions {self.precisions} are all in excluded_precisions: nothing to lower")
        return out


def _op_dict(name: str, value: Any) -> dict | None:
    """An INC op dict checked as INC's schema checks it (scalars wrapped in lists), or ValueError naming the entry."""
    if value is None or value == {}:
        return None if value is None else {}
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict (regex -> {{'weight': ..., 'activation': ...}}), got {type(value).__name__}")
    checked = {}
    for key, spec in value.items():
        if not isinstance(key, str):
            raise ValueError(f"{name} key {key!r} must be a str (a regex, matched in full)")
        if not isinstance(spec, dict) or not set(spec) <= {"weight", "activation"}:
            raise ValueError(f"{name}[{key!r}] must be a dict with 'weight' and/or 'activation', got {spec!r}")
        checked[key] = {side: {k: v if isinstance(v, list) else [v] for k, v in fields.items()} for side, fields in spec.items()}
        for side, fields in checked[key].items():
            dtypes = fields.get("dtype", [])
            known = WEIGHT_DTYPES if side == "weight" else ACTIVATION_DTYPES
            bad = [d for d in dtypes if d not in known]
            if bad:
                raise ValueError(f"{name}[{key!r}][{side!r}]['dtype'] has {bad}: INC 2.6 takes {sorted(known)}")
    return checked


def allowed_precisions(name: str, key: str, spec: Mapping[str, Mapping[str, list]]) -> tuple[str, ...]:
    """The precisions of raytune-inc an INC op dict entry allows: fp32/bf16/fp16 where both sides allow that dtype, int8
    and int8_dynamic where the weight may be int8 and the activation int8 or uint8; ValueError for a setting other than
    a dtype that raytune-inc's int8 does not have (a weight scheme, granularity, algorithm, bit width)."""
    for side, fields in spec.items():
        for field_name, values in fields.items():
            if field_name == "dtype":
                continue
            ours = OUR_SCHEME[side].get(field_name)
            if ours is None or not set(values) <= ours:
                have = ", ".join(f"{k}={sorted(v)}" for k, v in OUR_SCHEME[side].items())
                raise ValueError(
                    f"{name}[{key!r}][{side!r}][{field_name!r}]={values}: raytune-inc's int8 {side} has {have} only; "
                    "leave the setting out, or keep the op in fp32 with {'dtype': ['fp32']}"
                )
    weight = set(spec.get("weight", {}).get("dtype", WEIGHT_DTYPES))
    activation = set(spec.get("activation", {}).get("dtype", ACTIVATION_DTYPES))
    allowed = ["fp32"]
    for dtype in ("bf16", "fp16"):
        if dtype in weight and dtype in activation:
            allowed.append(dtype)
    if "int8" in weight and activation & {"int8", "uint8"}:
        allowed += ["int8_dynamic", "int8"]
    return tuple(allowed)


def our_op_dict(name: str, value: Mapping | None) -> dict[str, tuple[str, ...]] | None:
    """An INC op dict as `tune` takes it (regex -> allowed precisions); regexes are checked by `tune`."""
    if not value:
        return None
    return {key: allowed_precisions(name, key, spec) for key, spec in value.items()}
