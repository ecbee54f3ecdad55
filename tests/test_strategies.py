"""The two strategies on hand-made spaces, with the expected trial sequences written out (STRATEGIES.md).

Accuracies are multiples of 1/16 so that every sum is exact and ties with the
tolerance boundary are real ties.
"""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pyarrow as pa
import pytest

import raytune_inc
from raytune_inc import (
    AccuracyCriterion,
    AutoMixedPrecisionStrategy,
    ConservativeStrategy,
    Op,
    TuningError,
    TuningSpace,
    get_strategy,
    known_strategies,
    tune_space,
)

U = 1 / 16


class Additive:
    """accuracy = baseline - sum of losses[(op, precision)] (or + for lower-is-better metrics); records its calls."""

    def __init__(self, losses=None, baseline=1.0, sign=-1, errors=(), nans=()):
        self.losses = dict(losses or {})
        self.baseline = baseline
        self.sign = sign
        self.errors = [dict(c) for c in errors]  # configs that raise
        self.nans = [dict(c) for c in nans]  # configs that return NaN
        self.calls: list[dict[str, str]] = []

    def __call__(self, config):
        self.calls.append(dict(config))
        if config in self.errors:
            raise RuntimeError(f"evaluation broke on {config}")
        if config in self.nans:
            return math.nan
        return self.baseline + self.sign * sum(self.losses.get(item, 0.0) for item in config.items())


def tune(space, evaluate, **kwargs):
    kwargs.setdefault("workers", 0)
    return tune_space(space, evaluate, **kwargs)


def configs(res):
    return [t.config for t in res.trials]


def absolute(tol, higher_is_better=True):
    return AccuracyCriterion(tolerable_loss=tol, criterion="absolute", higher_is_better=higher_is_better)


def check_calls(evaluate, res):
    """The evaluations were the baseline, then each committed trial once (dedupe), in that order."""
    all_fp32 = dict.fromkeys(res.trials[0].config, "fp32")
    assert evaluate.calls == [all_fp32] + configs(res)


# ---------------------------------------------------------------- conservative: the STRATEGIES.md example


@pytest.fixture
def example():
    return TuningSpace([Op("conv1", "Conv2d", ("int8",)), Op("conv2", "Conv2d", ("int8",)), Op("fc", "Linear", ("int8",))])


def test_example_type_wise_passes(example):
    ev = Additive()
    res = tune(example, ev)
    assert configs(res) == [
        {"conv1": "int8", "conv2": "int8", "fc": "fp32"},
        {"conv1": "int8", "conv2": "int8", "fc": "int8"},
    ]
    assert [t.meets for t in res.trials] == [True, True]
    assert [t.accuracy for t in res.trials] == [1.0, 1.0]
    assert res.config == {"conv1": "int8", "conv2": "int8", "fc": "int8"}
    assert res.accuracy == 1.0
    assert res.baseline == 1.0
    assert res.stop_reason == "finished"
    assert [t.seq for t in res.trials] == [1, 2]
    check_calls(ev, res)


def test_example_type_wise_fails_then_op_wise(example):
    # convs together lose 3/8 > 1/4; conv1 alone 1/8 meets; conv2 on top of conv1 is the failed
    # type-wise config again (dedupe, no trial); fc on top lands exactly on the boundary (meets).
    ev = Additive({("conv1", "int8"): 2 * U, ("conv2", "int8"): 4 * U, ("fc", "int8"): 2 * U})
    res = tune(example, ev, accuracy=absolute(4 * U))
    assert configs(res) == [
        {"conv1": "int8", "conv2": "int8", "fc": "fp32"},
        {"conv1": "int8", "conv2": "fp32", "fc": "fp32"},
        {"conv1": "int8", "conv2": "fp32", "fc": "int8"},
    ]
    assert [t.accuracy for t in res.trials] == [1 - 6 * U, 1 - 2 * U, 1 - 4 * U]
    assert [t.meets for t in res.trials] == [False, True, True]
    assert res.config == {"conv1": "int8", "conv2": "fp32", "fc": "int8"}
    assert res.accuracy == 0.75
    check_calls(ev, res)
    assert len(ev.calls) == 4


def test_example_first_op_fails_second_accepted(example):
    ev = Additive({("conv1", "int8"): 8 * U, ("conv2", "int8"): 2 * U, ("fc", "int8"): 2 * U})
    res = tune(example, ev, accuracy=absolute(4 * U))
    assert configs(res) == [
        {"conv1": "int8", "conv2": "int8", "fc": "fp32"},
        {"conv1": "int8", "conv2": "fp32", "fc": "fp32"},
        {"conv1": "fp32", "conv2": "int8", "fc": "fp32"},
        {"conv1": "fp32", "conv2": "int8", "fc": "int8"},
    ]
    assert [t.meets for t in res.trials] == [False, False, True, True]
    assert res.config == {"conv1": "fp32", "conv2": "int8", "fc": "int8"}
    check_calls(ev, res)


def test_op_wise_builds_on_accepted():
    space = TuningSpace([Op(f"conv{i}", "Conv2d", ("int8",)) for i in (1, 2, 3)])
    ev = Additive({("conv1", "int8"): 2 * U, ("conv2", "int8"): 8 * U, ("conv3", "int8"): 2 * U})
    res = tune(space, ev, accuracy=absolute(4 * U))
    assert configs(res) == [
        {"conv1": "int8", "conv2": "int8", "conv3": "int8"},
        {"conv1": "int8", "conv2": "fp32", "conv3": "fp32"},
        {"conv1": "int8", "conv2": "int8", "conv3": "fp32"},
        {"conv1": "int8", "conv2": "fp32", "conv3": "int8"},
    ]
    assert [t.meets for t in res.trials] == [False, True, False, True]
    assert res.config == {"conv1": "int8", "conv2": "fp32", "conv3": "int8"}


def test_example_one_op_group_dedupe(example):
    ev = Additive({("fc", "int8"): 8 * U})
    res = tune(example, ev, accuracy=absolute(4 * U))
    # the op-wise {fc} on top of the accepted convs equals the failed type-wise trial: skipped
    assert configs(res) == [
        {"conv1": "int8", "conv2": "int8", "fc": "fp32"},
        {"conv1": "int8", "conv2": "int8", "fc": "int8"},
    ]
    assert [t.meets for t in res.trials] == [True, False]
    assert res.config == {"conv1": "int8", "conv2": "int8", "fc": "fp32"}
    assert len(ev.calls) == 3
    check_calls(ev, res)


def test_conservative_nothing_meets(example):
    ev = Additive({("conv1", "int8"): 8 * U, ("conv2", "int8"): 8 * U, ("fc", "int8"): 8 * U})
    res = tune(example, ev, accuracy=absolute(4 * U))
    assert configs(res) == [
        {"conv1": "int8", "conv2": "int8", "fc": "fp32"},
        {"conv1": "int8", "conv2": "fp32", "fc": "fp32"},
        {"conv1": "fp32", "conv2": "int8", "fc": "fp32"},
        {"conv1": "fp32", "conv2": "fp32", "fc": "int8"},
    ]
    assert not any(t.meets for t in res.trials)
    assert res.config is None
    assert res.accuracy is None
    assert res.stop_reason == "finished"


def test_conservative_never_stops_at_first_meet(example):
    res = tune(example, Additive(), accuracy=absolute(0))
    assert len(res.trials) == 2  # the first trial met, and the walk went on


def test_zero_tolerance_exact_tie_meets(example):
    # an int8 fc that gains exactly nothing is a tie with the baseline: meets with tolerable_loss=0
    ev = Additive({("conv1", "int8"): U})
    res = tune(example, ev, accuracy=AccuracyCriterion(tolerable_loss=0))
    assert configs(res) == [
        {"conv1": "int8", "conv2": "int8", "fc": "fp32"},
        {"conv1": "int8", "conv2": "fp32", "fc": "fp32"},
        {"conv1": "fp32", "conv2": "int8", "fc": "fp32"},
        {"conv1": "fp32", "conv2": "int8", "fc": "int8"},
    ]
    assert [t.meets for t in res.trials] == [False, False, True, True]


# ---------------------------------------------------------------- conservative: pools


def test_pools_go_from_least_to_most_aggressive_each_building_on_the_last():
    # STRATEGIES.md: bf16, fp16, int8_dynamic, int8; the precisions' order in the run does not matter.
    space = TuningSpace([Op("a", "Conv2d", ("bf16", "int8")), Op("b", "Linear", ("fp16", "int8_dynamic", "int8"))])
    ev = Additive({("b", "int8"): U})  # static int8 costs b too much: its dynamic int8 stays
    res = tune(space, ev, precisions=("int8", "int8_dynamic", "fp16", "bf16"), accuracy=absolute(U / 2))
    assert [(t.stage, t.config) for t in res.trials] == [
        ("bf16 type-wise", {"a": "bf16", "b": "fp32"}),
        ("fp16 type-wise", {"a": "bf16", "b": "fp16"}),
        ("int8_dynamic type-wise", {"a": "bf16", "b": "int8_dynamic"}),
        ("int8 type-wise", {"a": "int8", "b": "int8_dynamic"}),
        ("int8 type-wise", {"a": "int8", "b": "int8"}),
    ]
    assert [t.meets for t in res.trials] == [True, True, True, True, False]
    assert res.config == {"a": "int8", "b": "int8_dynamic"}


def test_bf16_accepted_then_int8_over_it():
    space = TuningSpace([Op("a", "Conv2d", ("bf16", "int8")), Op("b", "Linear", ("bf16", "int8"))])
    res = tune(space, Additive())
    assert configs(res) == [
        {"a": "bf16", "b": "fp32"},
        {"a": "bf16", "b": "bf16"},
        {"a": "int8", "b": "bf16"},
        {"a": "int8", "b": "int8"},
    ]
    assert res.config == {"a": "int8", "b": "int8"}


def test_bf16_kept_when_int8_fails():
    space = TuningSpace([Op("a", "Conv2d", ("bf16", "int8")), Op("b", "Linear", ("bf16", "int8"))])
    ev = Additive({("a", "int8"): 8 * U, ("a", "bf16"): U, ("b", "bf16"): U, ("b", "int8"): 2 * U})
    res = tune(space, ev, accuracy=absolute(4 * U))
    assert configs(res) == [
        {"a": "bf16", "b": "fp32"},
        {"a": "bf16", "b": "bf16"},
        {"a": "int8", "b": "bf16"},  # fails; its op-wise twin is skipped (group of one)
        {"a": "bf16", "b": "int8"},
    ]
    assert [t.meets for t in res.trials] == [True, True, False, True]
    assert res.config == {"a": "bf16", "b": "int8"}
    assert res.accuracy == 1 - 3 * U
    check_calls(ev, res)


def test_all_three_pools_in_order():
    space = TuningSpace([Op("a", "Conv2d")])
    res = tune(space, Additive())
    assert configs(res) == [{"a": "bf16"}, {"a": "fp16"}, {"a": "int8"}]
    assert res.config == {"a": "int8"}


@pytest.mark.parametrize(
    ("precisions", "expected"),
    [
        (("int8",), [{"a": "int8", "b": "fp32"}, {"a": "int8", "b": "int8"}]),
        (("fp16",), [{"a": "fp16", "b": "fp32"}]),
        (
            ("int8", "bf16"),
            [{"a": "bf16", "b": "fp32"}, {"a": "bf16", "b": "bf16"}, {"a": "int8", "b": "bf16"}, {"a": "int8", "b": "int8"}],
        ),
        ("bf16", [{"a": "bf16", "b": "fp32"}, {"a": "bf16", "b": "bf16"}]),
    ],
)
def test_precisions_subset_skips_pools(precisions, expected):
    space = TuningSpace([Op("a", "Conv2d"), Op("b", "Linear", ("bf16", "int8"))])
    res = tune(space, Additive(), precisions=precisions)
    assert configs(res) == expected
    assert res.config == expected[-1]


# ---------------------------------------------------------------- conservative: op-type order


def test_conv_before_linear_whatever_the_space_order():
    space = TuningSpace([Op("fc", "Linear", ("int8",)), Op("conv", "Conv2d", ("int8",))])
    res = tune(space, Additive())
    assert configs(res) == [{"fc": "fp32", "conv": "int8"}, {"fc": "int8", "conv": "int8"}]


def test_default_type_order_prefixes():
    space = TuningSpace(
        [
            Op("ln", "LayerNorm", ("int8",)),
            Op("fc", "LinearDynamic", ("int8",)),
            Op("bmm", "BMM", ("int8",)),
            Op("qconv", "QConv", ("int8",)),  # does not *start* with conv
            Op("mm", "MatMul", ("int8",)),
            Op("c1d", "conv1d", ("int8",)),
            Op("emb", "Embedding", ("int8",)),
            Op("bmm2", "Bmm", ("int8",)),
            Op("ct", "ConvTranspose2d", ("int8",)),
            Op("ln2", "LayerNorm", ("int8",)),
            Op("mm2", "matmul", ("int8",)),
        ]
    )
    res = tune(space, Additive())
    lowered = [[name for name, p in t.config.items() if p == "int8"] for t in res.trials]
    newly = [sorted(set(cur) - set(prev)) for prev, cur in zip([[]] + lowered, lowered, strict=False)]
    # conv*, then matmul*, then bmm*, then linear*; then the others in first-appearance order
    assert newly == [
        ["c1d"],  # conv1d
        ["ct"],  # ConvTranspose2d
        ["mm"],  # MatMul
        ["mm2"],  # matmul
        ["bmm"],  # BMM
        ["bmm2"],  # Bmm
        ["fc"],  # LinearDynamic
        ["ln", "ln2"],  # LayerNorm (first appearance: before QConv and Embedding)
        ["qconv"],
        ["emb"],
    ]
    assert res.config == dict.fromkeys(space.names, "int8")


def test_type_group_is_in_space_order_and_types_first_appearance():
    space = TuningSpace(
        [
            Op("emb", "Embedding", ("int8",)),
            Op("ln1", "LayerNorm", ("int8",)),
            Op("emb2", "Embedding", ("int8",)),
            Op("ln2", "LayerNorm", ("int8",)),
        ]
    )
    ev = Additive({("emb", "int8"): 8 * U, ("ln1", "int8"): 8 * U})
    res = tune(space, ev, accuracy=absolute(4 * U))
    assert configs(res) == [
        {"emb": "int8", "ln1": "fp32", "emb2": "int8", "ln2": "fp32"},
        {"emb": "int8", "ln1": "fp32", "emb2": "fp32", "ln2": "fp32"},
        {"emb": "fp32", "ln1": "fp32", "emb2": "int8", "ln2": "fp32"},
        {"emb": "fp32", "ln1": "int8", "emb2": "int8", "ln2": "int8"},
        {"emb": "fp32", "ln1": "int8", "emb2": "int8", "ln2": "fp32"},
        {"emb": "fp32", "ln1": "fp32", "emb2": "int8", "ln2": "int8"},
    ]
    assert res.config == {"emb": "fp32", "ln1": "fp32", "emb2": "int8", "ln2": "int8"}


def test_user_priority():
    space = TuningSpace(
        [
            Op("ln", "LayerNorm", ("int8",)),
            Op("conv", "Conv2d", ("int8",)),
            Op("fc", "Linear", ("int8",)),
            Op("mm", "MatMul", ("int8",)),
            Op("emb", "Embedding", ("int8",)),
        ]
    )
    strategy = ConservativeStrategy(op_type_priority=["Linear", "GRU", "Embedding"])  # GRU: not in the space
    res = tune(space, Additive(), strategy=strategy)
    # named types first in the given order, then the rest in first-appearance order (not conv-first)
    assert configs(res) == [
        {"ln": "fp32", "conv": "fp32", "fc": "int8", "mm": "fp32", "emb": "fp32"},
        {"ln": "fp32", "conv": "fp32", "fc": "int8", "mm": "fp32", "emb": "int8"},
        {"ln": "int8", "conv": "fp32", "fc": "int8", "mm": "fp32", "emb": "int8"},
        {"ln": "int8", "conv": "int8", "fc": "int8", "mm": "fp32", "emb": "int8"},
        {"ln": "int8", "conv": "int8", "fc": "int8", "mm": "int8", "emb": "int8"},
    ]
    assert res.strategy == "conservative"


def test_user_priority_exact_names():
    space = TuningSpace([Op("fc", "Linear", ("int8",)), Op("conv", "Conv2d", ("int8",))])
    # "conv2d" is not the type name "Conv2d": no type is named, so first-appearance order
    res = tune(space, Additive(), strategy=ConservativeStrategy(op_type_priority=["conv2d"]))
    assert configs(res) == [{"fc": "int8", "conv": "fp32"}, {"fc": "int8", "conv": "int8"}]
    res = tune(space, Additive(), strategy=ConservativeStrategy(op_type_priority=[]))
    assert configs(res) == [{"fc": "int8", "conv": "fp32"}, {"fc": "int8", "conv": "int8"}]


def test_user_priority_with_a_repeated_name():
    # a name given twice is still a named type: every named type comes before the unnamed ones
    # (refusing the list with a ValueError that names the repeated type would also be acceptable)
    space = TuningSpace([Op("mm", "MatMul", ("int8",)), Op("conv", "Conv2d", ("int8",))])
    try:
        strategy = ConservativeStrategy(op_type_priority=["Linear", "Linear", "Conv2d"])
        res = tune(space, Additive(), strategy=strategy)
    except ValueError as exc:
        assert "Linear" in str(exc)
        return
    assert configs(res) == [{"mm": "fp32", "conv": "int8"}, {"mm": "int8", "conv": "int8"}]


def test_user_priority_single_string_refused():
    with pytest.raises(TypeError, match="op_type_priority"):
        ConservativeStrategy(op_type_priority="Linear")


# ---------------------------------------------------------------- auto_mixed_precision


@pytest.fixture
def amp_space():
    return TuningSpace(
        [
            Op("a", "Conv2d", ("bf16", "int8")),
            Op("b", "Linear", ("bf16", "fp16")),
            Op("c", "LayerNorm", ("bf16",)),
            Op("d", "Embedding", ("int8",)),
        ]
    )


def amp(space, ev, **kwargs):
    return tune(space, ev, strategy="auto_mixed_precision", **kwargs)


def test_amp_stage1_meets(amp_space):
    ev = Additive({("a", "bf16"): U})
    res = amp(amp_space, ev, accuracy=absolute(U))
    assert configs(res) == [{"a": "bf16", "b": "bf16", "c": "bf16", "d": "fp32"}]
    assert res.config == {"a": "bf16", "b": "bf16", "c": "bf16", "d": "fp32"}
    assert res.accuracy == 1 - U
    assert res.strategy == "auto_mixed_precision"
    assert res.stop_reason == "finished"


def test_amp_stage2_bottom_to_top_not_accumulated(amp_space):
    ev = Additive({("a", "bf16"): U, ("b", "bf16"): 8 * U, ("c", "bf16"): U})
    res = amp(amp_space, ev, accuracy=absolute(4 * U))
    assert configs(res) == [
        {"a": "bf16", "b": "bf16", "c": "bf16", "d": "fp32"},
        {"a": "bf16", "b": "bf16", "c": "fp32", "d": "fp32"},
        {"a": "bf16", "b": "fp32", "c": "bf16", "d": "fp32"},  # c back at bf16: not accumulated
    ]
    assert [t.meets for t in res.trials] == [False, False, True]
    assert res.config == {"a": "bf16", "b": "fp32", "c": "bf16", "d": "fp32"}
    assert res.accuracy == 1 - 2 * U
    check_calls(ev, res)


def test_amp_stops_at_first_meeting_stage2(amp_space):
    # both c and b fallbacks would meet; the bottom one (c) comes first and ends the run
    ev = Additive({("a", "bf16"): U, ("b", "bf16"): U, ("c", "bf16"): U})
    res = amp(amp_space, ev, accuracy=absolute(2 * U))
    assert configs(res) == [
        {"a": "bf16", "b": "bf16", "c": "bf16", "d": "fp32"},
        {"a": "bf16", "b": "bf16", "c": "fp32", "d": "fp32"},
    ]
    assert res.config == {"a": "bf16", "b": "bf16", "c": "fp32", "d": "fp32"}


STAGE3 = [
    {"a": "bf16", "b": "bf16", "c": "bf16", "d": "fp32"},  # stage 1: 5/16
    {"a": "bf16", "b": "bf16", "c": "fp32", "d": "fp32"},  # stage 2, c back: 6/16
    {"a": "bf16", "b": "fp32", "c": "bf16", "d": "fp32"},  # b back: 11/16
    {"a": "fp32", "b": "bf16", "c": "bf16", "d": "fp32"},  # a back: 9/16
    {"a": "fp32", "b": "fp32", "c": "bf16", "d": "fp32"},  # stage 3, ranking b, a, c; k=2: 15/16
]


def test_amp_stage3_ranking_and_accumulated_fallback(amp_space):
    ev = Additive({("a", "bf16"): 4 * U, ("b", "bf16"): 6 * U, ("c", "bf16"): U})
    res = amp(amp_space, ev, accuracy=absolute(U))
    assert configs(res) == STAGE3
    assert [t.accuracy for t in res.trials] == [5 * U, 6 * U, 11 * U, 9 * U, 15 * U]
    assert [t.meets for t in res.trials] == [False, False, False, False, True]  # the last on the boundary
    assert res.config == STAGE3[-1]
    assert res.accuracy == 15 * U
    check_calls(ev, res)


def test_amp_stage3_nothing_meets_all_fp32_skipped(amp_space):
    ev = Additive({("a", "bf16"): 4 * U, ("b", "bf16"): 6 * U, ("c", "bf16"): U})
    res = amp(amp_space, ev, accuracy=absolute(0))
    # k=3 would put every capable op back to fp32: the all-fp32 config, skipped (never the result)
    assert configs(res) == STAGE3
    assert not any(t.meets for t in res.trials)
    assert res.config is None
    assert res.accuracy is None
    assert res.stop_reason == "finished"
    assert len(ev.calls) == 6


def test_amp_lower_is_better(amp_space):
    # an error-rate-like metric: baseline 1/4, each lowered op adds to it; ranking is lowest first
    ev = Additive({("a", "bf16"): 4 * U, ("b", "bf16"): 6 * U, ("c", "bf16"): U}, baseline=0.25, sign=+1)
    res = amp(amp_space, ev, accuracy=absolute(U, higher_is_better=False))
    assert configs(res) == STAGE3
    assert [t.meets for t in res.trials] == [False, False, False, False, True]
    assert res.config == STAGE3[-1]
    assert res.accuracy == 0.25 + U


def test_amp_lower_is_better_relative_negative_baseline(amp_space):
    # baseline -1 (e.g. a negative log-likelihood style score), lower is better, 1/16 relative of |-1|
    ev = Additive({("a", "bf16"): 4 * U, ("b", "bf16"): 6 * U, ("c", "bf16"): U}, baseline=-1.0, sign=+1)
    res = amp(amp_space, ev, accuracy=AccuracyCriterion(tolerable_loss=U, higher_is_better=False))
    assert configs(res) == STAGE3
    assert res.config == STAGE3[-1]
    assert res.baseline == -1.0


def four_ops():
    return TuningSpace([Op(n, "Linear", ("bf16",)) for n in ("w", "x", "y", "z")])


def test_amp_ranking_ties_are_stable():
    ev = Additive({("w", "bf16"): U, ("x", "bf16"): 2 * U, ("y", "bf16"): U, ("z", "bf16"): U})
    res = amp(four_ops(), ev, accuracy=absolute(0))
    # stage 2 (z, y, x, w): 12/16, 12/16, 13/16, 12/16 -> ranking x, then the tie z, y, w in fallback order
    assert configs(res) == [
        {"w": "bf16", "x": "bf16", "y": "bf16", "z": "bf16"},
        {"w": "bf16", "x": "bf16", "y": "bf16", "z": "fp32"},
        {"w": "bf16", "x": "bf16", "y": "fp32", "z": "bf16"},
        {"w": "bf16", "x": "fp32", "y": "bf16", "z": "bf16"},
        {"w": "fp32", "x": "bf16", "y": "bf16", "z": "bf16"},
        {"w": "bf16", "x": "fp32", "y": "bf16", "z": "fp32"},  # k=2: x, z
        {"w": "bf16", "x": "fp32", "y": "fp32", "z": "fp32"},  # k=3: x, z, y
    ]
    assert res.config is None


def test_amp_all_tied_ranking_is_fallback_order():
    ev = Additive({(n, "bf16"): U for n in "wxyz"})
    res = amp(four_ops(), ev, accuracy=absolute(0))
    assert configs(res)[5:] == [
        {"w": "bf16", "x": "bf16", "y": "fp32", "z": "fp32"},  # z, y
        {"w": "bf16", "x": "fp32", "y": "fp32", "z": "fp32"},  # z, y, x
    ]


@pytest.mark.parametrize("failure", ["raise", "nan"])
def test_amp_errored_fallback_ranked_last(failure):
    broken = {"w": "bf16", "x": "bf16", "y": "fp32", "z": "bf16"}  # y's stage-2 config; would be the best
    kwargs = {"errors": [broken]} if failure == "raise" else {"nans": [broken]}
    ev = Additive({("w", "bf16"): U, ("x", "bf16"): U, ("y", "bf16"): 4 * U, ("z", "bf16"): U}, **kwargs)
    res = amp(four_ops(), ev, accuracy=absolute(0))
    assert configs(res) == [
        {"w": "bf16", "x": "bf16", "y": "bf16", "z": "bf16"},
        {"w": "bf16", "x": "bf16", "y": "bf16", "z": "fp32"},
        broken,
        {"w": "bf16", "x": "fp32", "y": "bf16", "z": "bf16"},
        {"w": "fp32", "x": "bf16", "y": "bf16", "z": "bf16"},
        {"w": "bf16", "x": "fp32", "y": "bf16", "z": "fp32"},  # ranking z, x, w (ties, fallback order), y last
        {"w": "fp32", "x": "fp32", "y": "bf16", "z": "fp32"},
    ]
    assert res.trials[2].accuracy is None
    assert res.trials[2].error
    assert res.trials[2].meets is False


def test_amp_fp16_target():
    space = TuningSpace([Op("p", "Conv2d", ("bf16", "fp16")), Op("q", "Linear", ("bf16",)), Op("r", "MatMul", ("fp16", "int8"))])
    res = amp(space, Additive(), precisions=("fp16", "bf16"))
    assert configs(res) == [{"p": "fp16", "q": "fp32", "r": "fp16"}]
    res = amp(space, Additive(), precisions=("int8", "fp16"))
    assert configs(res) == [{"p": "fp16", "q": "fp32", "r": "fp16"}]
    res = amp(space, Additive(), precisions=("bf16", "fp16"))
    assert configs(res) == [{"p": "bf16", "q": "bf16", "r": "fp32"}]
    res = amp(space, Additive())  # default precisions: bf16 first
    assert configs(res) == [{"p": "bf16", "q": "bf16", "r": "fp32"}]


def test_amp_fp16_target_fallback():
    space = TuningSpace([Op("p", "Conv2d", ("bf16", "fp16")), Op("q", "Linear", ("bf16",)), Op("r", "MatMul", ("fp16", "int8"))])
    ev = Additive({("p", "fp16"): 8 * U, ("r", "fp16"): U})
    res = amp(space, ev, precisions=("fp16",), accuracy=absolute(4 * U))
    assert configs(res) == [
        {"p": "fp16", "q": "fp32", "r": "fp16"},
        {"p": "fp16", "q": "fp32", "r": "fp32"},
        {"p": "fp32", "q": "fp32", "r": "fp16"},
    ]
    assert res.config == {"p": "fp32", "q": "fp32", "r": "fp16"}


def test_amp_single_capable_op():
    space = TuningSpace([Op("a", "Conv2d", ("bf16",)), Op("b", "Linear", ("int8",))])
    ev = Additive({("a", "bf16"): 8 * U})
    res = amp(space, ev, accuracy=absolute(4 * U))
    # its stage-2 candidate is the all-fp32 config: skipped, nothing ranked, no stage 3
    assert configs(res) == [{"a": "bf16", "b": "fp32"}]
    assert res.config is None
    assert res.stop_reason == "finished"
    assert len(ev.calls) == 2


def test_amp_two_capable_ops_k2_is_all_fp32():
    space = TuningSpace([Op("a", "Conv2d", ("bf16",)), Op("b", "Linear", ("bf16",))])
    ev = Additive({("a", "bf16"): 8 * U, ("b", "bf16"): 8 * U})
    res = amp(space, ev, accuracy=absolute(4 * U))
    assert configs(res) == [{"a": "bf16", "b": "bf16"}, {"a": "bf16", "b": "fp32"}, {"a": "fp32", "b": "bf16"}]
    assert res.config is None


# ---------------------------------------------------------------- max_trials and timeout


def test_max_trials_result_is_accepted_so_far(example):
    ev = Additive({("conv1", "int8"): 2 * U, ("conv2", "int8"): 4 * U, ("fc", "int8"): 2 * U})
    res = tune(example, ev, accuracy=absolute(4 * U), max_trials=2)
    assert configs(res) == [
        {"conv1": "int8", "conv2": "int8", "fc": "fp32"},
        {"conv1": "int8", "conv2": "fp32", "fc": "fp32"},
    ]
    assert res.config == {"conv1": "int8", "conv2": "fp32", "fc": "fp32"}
    assert res.accuracy == 1 - 2 * U
    assert res.stop_reason == "max_trials"
    assert len(ev.calls) == 3


def test_max_trials_exactly_enough(example):
    ev = Additive({("conv1", "int8"): 2 * U, ("conv2", "int8"): 4 * U, ("fc", "int8"): 2 * U})
    res = tune(example, ev, accuracy=absolute(4 * U), max_trials=3)  # the dedupe hit does not count
    assert len(res.trials) == 3
    assert res.stop_reason == "finished"
    assert res.config == {"conv1": "int8", "conv2": "fp32", "fc": "int8"}


def test_max_trials_dedupe_hits_after_the_cap_are_free(example):
    ev = Additive({("fc", "int8"): 8 * U})
    res = tune(example, ev, accuracy=absolute(4 * U), max_trials=2)
    assert len(res.trials) == 2
    assert res.stop_reason == "finished"  # the last candidate was a dedupe hit, not a trial


def test_max_trials_one_failing(example):
    ev = Additive({("conv1", "int8"): 8 * U})
    res = tune(example, ev, accuracy=absolute(4 * U), max_trials=1)
    assert configs(res) == [{"conv1": "int8", "conv2": "int8", "fc": "fp32"}]
    assert res.config is None
    assert res.stop_reason == "max_trials"


@pytest.mark.parametrize("strategy", ["conservative", "auto_mixed_precision"])
def test_max_trials_zero_is_refused_before_any_evaluation(amp_space, strategy):
    ev = Additive()
    with pytest.raises(ValueError, match=r"max_trials=0 allows no trial.*give max_trials >= 1"):
        tune(amp_space, ev, strategy=strategy, max_trials=0)
    assert ev.calls == []


def test_max_trials_amp_result_none_until_it_returns(amp_space):
    ev = Additive({("a", "bf16"): 4 * U, ("b", "bf16"): 6 * U, ("c", "bf16"): U})
    res = amp(amp_space, ev, accuracy=absolute(U), max_trials=4)
    assert configs(res) == STAGE3[:4]
    assert res.config is None
    assert res.stop_reason == "max_trials"
    res = amp(amp_space, ev, accuracy=absolute(U), max_trials=5)
    assert res.config == STAGE3[-1]
    assert res.stop_reason == "finished"


def test_default_max_trials_is_100():
    space = TuningSpace([Op(f"conv{i}", "Conv2d", ("int8",)) for i in range(150)])
    ev = Additive({(f"conv{i}", "int8"): 1.0 for i in range(150)})
    res = tune(space, ev)
    assert len(res.trials) == 100
    assert res.stop_reason == "max_trials"


class SlowEvaluate:
    """Every call takes `cost` seconds of monotonic time; every op at int8 loses a lot except the even ones."""

    def __init__(self, cost):
        self.cost = cost
        self.calls = 0

    def __call__(self, config):
        self.calls += 1
        end = time.monotonic() + self.cost
        while time.monotonic() < end:
            time.sleep(self.cost / 10)
        bad = sum(1 for name, p in config.items() if p == "int8" and int(name[2:]) % 2)
        return 1.0 - bad


def test_timeout_stops_and_returns_committed():
    space = TuningSpace([Op(f"op{i}", "Conv2d", ("int8",)) for i in range(40)])
    full = tune(space, SlowEvaluate(0), accuracy=absolute(0))
    assert len(full.trials) == 41 and full.stop_reason == "finished"
    ev = SlowEvaluate(0.02)
    res = tune(space, ev, accuracy=absolute(0), timeout=0.2)
    assert res.stop_reason == "timeout"
    assert len(res.trials) < len(full.trials)
    assert ev.calls == 1 + len(res.trials)
    assert configs(res) == configs(full)[: len(res.trials)]  # a prefix of the full run
    met = [t for t in res.trials if t.meets]
    assert res.config == (met[-1].config if met else None)


# ---------------------------------------------------------------- the registry


def test_unknown_strategy_lists_known():
    with pytest.raises(ValueError, match="unknown strategy 'greedy'") as info:
        tune(TuningSpace([Op("a", "Conv2d")]), Additive(), strategy="greedy")
    assert "conservative" in str(info.value)
    assert "auto_mixed_precision" in str(info.value)


def test_registry():
    assert {"conservative", "auto_mixed_precision"} <= set(known_strategies())
    assert isinstance(get_strategy("conservative"), ConservativeStrategy)
    assert isinstance(get_strategy("auto_mixed_precision"), AutoMixedPrecisionStrategy)
    mine = ConservativeStrategy()
    assert get_strategy(mine) is mine
    with pytest.raises(ValueError, match="conservative"):
        get_strategy("Conservative")


def test_strategy_instance_accepted(amp_space):
    res = tune(amp_space, Additive(), strategy=AutoMixedPrecisionStrategy())
    assert configs(res) == [{"a": "bf16", "b": "bf16", "c": "bf16", "d": "fp32"}]


# ---------------------------------------------------------------- errors


def test_baseline_raising_is_tuning_error(example):
    def evaluate(config):
        raise RuntimeError("the dataset is gone: code 4711")

    with pytest.raises(TuningError, match="the dataset is gone: code 4711"):
        tune(example, evaluate)
    assert raytune_inc.TuningError is TuningError


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_baseline_not_finite_is_tuning_error(example, value):
    with pytest.raises(TuningError, match="baseline"):
        tune(example, lambda config: value)


@pytest.mark.parametrize("failure", ["raise", "nan"])
def test_trial_error_is_an_errored_trial_and_run_goes_on(example, failure):
    broken = {"conv1": "int8", "conv2": "fp32", "fc": "fp32"}
    kwargs = {"errors": [broken]} if failure == "raise" else {"nans": [broken]}
    ev = Additive({("conv1", "int8"): U, ("conv2", "int8"): 8 * U}, **kwargs)
    res = tune(example, ev, accuracy=absolute(4 * U))
    assert configs(res) == [
        {"conv1": "int8", "conv2": "int8", "fc": "fp32"},
        broken,
        {"conv1": "fp32", "conv2": "int8", "fc": "fp32"},
        {"conv1": "fp32", "conv2": "fp32", "fc": "int8"},
    ]
    errored = res.trials[1]
    assert errored.accuracy is None
    assert errored.meets is False
    assert errored.error
    if failure == "raise":
        assert "evaluation broke on" in errored.error
    else:
        assert "NaN" in errored.error
    assert res.trials[3].meets
    assert res.config == {"conv1": "fp32", "conv2": "fp32", "fc": "int8"}
    row = res.history.to_pylist()[2]
    assert row["status"] == "error" and row["accuracy"] is None and row["error"] and row["meets"] is False


@pytest.mark.parametrize("value", ["0.9", None, [0.9], (0.9,), {"acc": 0.9}, b"0.9", np.array([0.9, 0.8])])
def test_trial_non_number_is_type_error_naming_config(example, value):
    def evaluate(config):
        return 1.0 if all(p == "fp32" for p in config.values()) else value

    expected = re.escape(str({"conv1": "int8", "conv2": "int8", "fc": "fp32"}))
    with pytest.raises(TypeError, match=expected):
        tune(example, evaluate)


def test_baseline_non_number_is_type_error(example):
    with pytest.raises(TypeError, match=re.escape(str({"conv1": "fp32", "conv2": "fp32", "fc": "fp32"}))):
        tune(example, lambda config: "high")


@pytest.mark.parametrize("value", [np.float64(0.75), np.float32(0.75), np.int64(1), 1, np.array(0.75)])
def test_numpy_and_int_accuracies_accepted(example, value):
    res = tune(example, lambda config: value, accuracy=AccuracyCriterion(tolerable_loss=0))
    assert res.baseline == float(value)
    assert type(res.baseline) is float
    assert [t.accuracy for t in res.trials] == [float(value)] * 2
    assert all(type(t.accuracy) is float for t in res.trials)
    assert res.config == {"conv1": "int8", "conv2": "int8", "fc": "int8"}


# ---------------------------------------------------------------- a given baseline


def test_given_baseline_skips_its_evaluation(example):
    ev = Additive({("conv1", "int8"): 2 * U}, baseline=1.0)
    res = tune(example, ev, baseline=1.0 - 2 * U, accuracy=AccuracyCriterion(tolerable_loss=0))
    assert {"conv1": "fp32", "conv2": "fp32", "fc": "fp32"} not in ev.calls
    assert len(ev.calls) == len(res.trials)
    assert res.baseline == 1.0 - 2 * U
    assert res.history.num_rows == len(res.trials)
    assert [t.meets for t in res.trials] == [True, True]


def test_given_baseline_is_the_reference(example):
    # the evaluation gives 0.5 everywhere, but the given baseline says the model is worth 1.0
    ev = Additive(baseline=0.5)
    res = tune(example, ev, baseline=1)
    assert res.baseline == 1.0
    assert res.config is None
    assert len(ev.calls) == len(res.trials) == 4


# ---------------------------------------------------------------- result fields and history

COLUMNS = [
    "run_id",
    "trial_id",
    "commit_seq",
    "config",
    "config_hash",
    "strategy",
    "stage",
    "status",
    "accuracy",
    "meets",
    "worker",
    "node",
    "device",
    "start_time",
    "end_time",
    "error",
]


def test_result_fields_and_history(example):
    ev = Additive({("conv1", "int8"): 2 * U, ("conv2", "int8"): 4 * U, ("fc", "int8"): 2 * U})
    res = tune(example, ev, accuracy=absolute(4 * U))
    assert isinstance(res, raytune_inc.TuneResult)
    for t in res.trials:
        assert isinstance(t, raytune_inc.Trial)
        assert isinstance(t.config, dict) and isinstance(t.meets, bool) and isinstance(t.stage, str)
    hist = res.history
    assert isinstance(hist, pa.Table)
    for column in COLUMNS:
        assert column in hist.column_names, column
    rows = hist.to_pylist()
    assert len(rows) == 1 + len(res.trials) == len(ev.calls)
    base = rows[0]
    assert base["commit_seq"] is None
    assert base["config"] == "..."  # one code per op: all fp32
    assert base["accuracy"] == 1.0 and base["status"] == "ok"
    assert [r["commit_seq"] for r in rows[1:]] == [1, 2, 3]
    assert [r["trial_id"] for r in rows] == [0, 1, 2, 3]
    assert [example.config_from_key(r["config"]).as_dict() for r in rows[1:]] == configs(res)
    assert [r["accuracy"] for r in rows[1:]] == [t.accuracy for t in res.trials]
    assert [r["meets"] for r in rows[1:]] == [t.meets for t in res.trials]
    assert len({r["run_id"] for r in rows}) == 1 and rows[0]["run_id"] == res.run_id
    assert {r["strategy"] for r in rows} == {"conservative"}
    assert len({r["config_hash"] for r in rows}) == len(rows)
    assert all(r["end_time"] >= r["start_time"] for r in rows)
    assert res.evaluations == len(rows)


def test_history_null_commit_seq_only_for_non_committed(amp_space):
    res = amp(amp_space, Additive({("a", "bf16"): 4 * U, ("b", "bf16"): 6 * U, ("c", "bf16"): U}), accuracy=absolute(U))
    hist = res.history
    commit_seq = hist.column("commit_seq").to_pylist()
    stages = hist.column("stage").to_pylist()
    assert commit_seq == [None, 1, 2, 3, 4, 5]
    assert stages[0] == "baseline"
    assert hist.column("commit_seq").null_count == 1
