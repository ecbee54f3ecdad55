"""Unit tests of the space (Op, TuningSpace, Config) and the accuracy criterion, and of bad inputs."""

from __future__ import annotations

import hashlib
import math

import pytest

from raytune_inc import AccuracyCriterion, Config, Op, TuningSpace, tune_space


def never_called(config):
    raise AssertionError(f"evaluate must not be called for bad inputs, got {config}")


# ---------------------------------------------------------------- Op


def test_op_defaults_to_all_lower_precisions():
    op = Op("conv1", "Conv2d")
    assert op.precisions == ("bf16", "fp16", "int8_dynamic", "int8")
    assert op.supports("fp32") and op.supports("bf16") and op.supports("int8")


def test_op_precisions_normalised():
    op = Op("fc", "Linear", ["int8", "fp32", "int8"])
    assert op.precisions == ("int8",)  # fp32 dropped (always supported), duplicates dropped, tuple
    assert op.supports("fp32")
    assert op.supports("int8")
    assert not op.supports("bf16")
    assert not op.supports("fp16")
    assert Op("fc", "Linear", "int8").precisions == ("int8",)  # a single string is one precision
    assert op == Op("fc", "Linear", ("int8",))
    assert hash(op) == hash(Op("fc", "Linear", ("int8",)))


def test_op_supporting_nothing_is_allowed():
    op = Op("ln", "LayerNorm", ())
    assert op.precisions == ()
    assert op.supports("fp32")
    assert not any(op.supports(p) for p in ("bf16", "fp16", "int8"))


def test_op_is_frozen():
    op = Op("a", "Conv2d")
    with pytest.raises(AttributeError):
        op.name = "b"


@pytest.mark.parametrize("bad", ["int4", "float8", "FP16", ""])
def test_op_unknown_precision_names_op_and_precision(bad):
    with pytest.raises(ValueError, match=rf"op 'conv7'.*unknown precision {bad!r}"):
        Op("conv7", "Conv2d", ("int8", bad))


@pytest.mark.parametrize("name", ["", None, 3])
def test_op_bad_name(name):
    with pytest.raises(ValueError, match="op name"):
        Op(name, "Conv2d")


def test_op_bad_type_names_the_op():
    with pytest.raises(ValueError, match="op 'x'.*type"):
        Op("x", "")


# ---------------------------------------------------------------- TuningSpace


def make_space():
    return TuningSpace([Op("conv1", "Conv2d", ("int8", "bf16")), Op("conv2", "Conv2d", ("int8",)), Op("fc", "Linear", ("int8",))])


def test_space_basics():
    space = make_space()
    assert len(space) == 3
    assert space.names == ("conv1", "conv2", "fc")
    assert [op.name for op in space] == ["conv1", "conv2", "fc"]
    assert space.index("fc") == 2
    with pytest.raises(KeyError, match="nope"):
        space.index("nope")
    assert space == make_space()
    assert hash(space) == hash(make_space())
    assert space != TuningSpace([Op("conv1", "Conv2d")])


def test_space_accepts_any_iterable():
    space = TuningSpace(Op(f"op{i}", "Linear") for i in range(3))
    assert space.names == ("op0", "op1", "op2")


def test_empty_space():
    with pytest.raises(ValueError, match="empty"):
        TuningSpace([])


def test_duplicate_op_names_named():
    with pytest.raises(ValueError, match="duplicate op name 'fc'"):
        TuningSpace([Op("fc", "Linear"), Op("conv", "Conv2d"), Op("fc", "Conv2d")])


def test_space_rejects_non_ops():
    with pytest.raises(TypeError, match="Op"):
        TuningSpace([Op("a", "Linear"), ("b", "Linear", ("int8",))])


def test_space_config_checks_mapping():
    space = make_space()
    cfg = space.config({"conv1": "bf16", "conv2": "fp32", "fc": "int8"})
    assert cfg.as_dict() == {"conv1": "bf16", "conv2": "fp32", "fc": "int8"}
    with pytest.raises(ValueError, match="zzz"):
        space.config({"conv1": "fp32", "conv2": "fp32", "fc": "fp32", "zzz": "fp32"})
    with pytest.raises(ValueError, match="fc"):
        space.config({"conv1": "fp32", "conv2": "fp32"})
    with pytest.raises(ValueError, match="'conv2' does not support 'bf16'"):
        space.config({"conv1": "fp32", "conv2": "bf16", "fc": "fp32"})


# ---------------------------------------------------------------- Config


def test_all_fp32_and_replace():
    space = make_space()
    base = space.all_fp32()
    assert base.is_all_fp32
    assert dict(base) == {"conv1": "fp32", "conv2": "fp32", "fc": "fp32"}
    cfg = base.replace(["conv1", "fc"], "int8")
    assert not cfg.is_all_fp32
    assert cfg.as_dict() == {"conv1": "int8", "conv2": "fp32", "fc": "int8"}
    assert base.is_all_fp32, "replace must return a copy, not change the original"
    assert dict(base) == {"conv1": "fp32", "conv2": "fp32", "fc": "fp32"}
    back = cfg.replace(("conv1", "fc"), "fp32")
    assert back.is_all_fp32
    assert back == base
    assert cfg.replace([], "bf16") == cfg
    with pytest.raises(KeyError):
        base.replace(["nope"], "int8")


def test_config_mapping_protocol():
    space = make_space()
    cfg = space.all_fp32().replace(["conv2"], "int8")
    assert list(cfg) == ["conv1", "conv2", "fc"]  # space order
    assert len(cfg) == 3
    assert cfg["conv2"] == "int8"
    assert cfg == {"conv1": "fp32", "conv2": "int8", "fc": "fp32"}
    assert cfg != {"conv1": "fp32", "conv2": "fp32", "fc": "fp32"}
    assert "conv2" in cfg
    assert isinstance(cfg, Config)


def test_config_hash_and_eq():
    space = make_space()
    a = space.all_fp32().replace(["conv1"], "bf16").replace(["fc"], "int8")
    b = space.config({"fc": "int8", "conv2": "fp32", "conv1": "bf16"})
    c = space.all_fp32().replace(["conv1"], "int8")
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c, space.all_fp32()}) == 3
    table = {a: 1.0}
    assert table[b] == 1.0
    # a space with the same op names (a fresh but equal space) gives equal, equally hashed configs
    other = make_space().config(b.as_dict())
    assert other == a and hash(other) == hash(a)


def test_config_key_and_digest_are_stable():
    space = make_space()
    cfg = space.config({"fc": "int8", "conv1": "bf16", "conv2": "fp32"})
    assert cfg.key() == "b.i"  # one code per op, in space order
    assert space.config_from_key(cfg.key()) == cfg
    assert cfg.digest() == hashlib.sha256(cfg.key().encode()).hexdigest()[:16]
    assert len(cfg.digest()) == 16
    same = make_space().all_fp32().replace(["conv1"], "bf16").replace(["fc"], "int8")
    assert same.key() == cfg.key() and same.digest() == cfg.digest()
    assert space.all_fp32().digest() != cfg.digest()


def test_config_digest_known_value():
    # a fixed value: the digest must not depend on the process (no hash(), no randomisation)
    space = TuningSpace([Op("a", "Conv2d"), Op("b", "Linear")])
    cfg = space.all_fp32().replace(["b"], "int8")
    assert cfg.key() == ".i"
    assert cfg.digest() == hashlib.sha256(b".i").hexdigest()[:16]


@pytest.mark.parametrize("key", ["..", "b.ix", ".?.", "..h", None])
def test_config_from_key_rejects_what_the_space_cannot_hold(key):
    # "..h": fc is int8-only; "b.ix": too long; ".?.": unknown code
    with pytest.raises(ValueError, match="config key|characters"):
        make_space().config_from_key(key)


# ---------------------------------------------------------------- AccuracyCriterion


def test_criterion_defaults():
    c = AccuracyCriterion()
    assert c.tolerable_loss == 0.01
    assert c.criterion == "relative"
    assert c.higher_is_better is True


def test_relative_higher_is_better():
    c = AccuracyCriterion(tolerable_loss=0.25, criterion="relative")
    assert c.tolerance(0.5) == 0.125
    assert c.meets(0.5, 0.5)
    assert c.meets(0.375, 0.5)  # exactly baseline - tol: non-strict
    assert c.goal(0.5) == 0.375
    assert not c.meets(0.37499, 0.5)
    assert c.meets(0.9, 0.5)  # better than the baseline


def test_absolute_higher_is_better():
    c = AccuracyCriterion(tolerable_loss=0.125, criterion="absolute")
    assert c.tolerance(100.0) == 0.125
    assert c.tolerance(-3.0) == 0.125
    assert c.meets(99.875, 100.0)
    assert not c.meets(99.87, 100.0)


def test_lower_is_better():
    c = AccuracyCriterion(tolerable_loss=0.25, criterion="relative", higher_is_better=False)
    assert c.meets(2.5, 2.0)  # exactly baseline + tol
    assert c.goal(2.0) == 2.5
    assert not c.meets(2.5001, 2.0)
    assert c.meets(1.0, 2.0)  # lower than the baseline is better
    a = AccuracyCriterion(tolerable_loss=0.5, criterion="absolute", higher_is_better=False)
    assert a.meets(2.5, 2.0)
    assert not a.meets(2.51, 2.0)


@pytest.mark.parametrize("higher", [True, False])
@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_zero_tolerance_tie_meets(kind, higher):
    c = AccuracyCriterion(tolerable_loss=0, criterion=kind, higher_is_better=higher)
    assert c.meets(0.75, 0.75)
    assert c.meets(-0.75, -0.75)
    assert c.meets(0.0, 0.0)
    worse = 0.75 - 1 / 1024 if higher else 0.75 + 1 / 1024
    assert not c.meets(worse, 0.75)


def test_relative_uses_abs_of_negative_baseline():
    c = AccuracyCriterion(tolerable_loss=0.5, criterion="relative")
    assert c.tolerance(-2.0) == 1.0
    assert c.meets(-3.0, -2.0)  # -2 - |−2|*0.5 = -3
    assert not c.meets(-3.01, -2.0)
    assert c.meets(-1.0, -2.0)
    low = AccuracyCriterion(tolerable_loss=0.5, criterion="relative", higher_is_better=False)
    assert low.meets(-1.0, -2.0)  # -2 + 1 = -1
    assert not low.meets(-0.99, -2.0)


@pytest.mark.parametrize("higher", [True, False])
@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_nan_and_none_never_meet(kind, higher):
    c = AccuracyCriterion(tolerable_loss=0.5, criterion=kind, higher_is_better=higher)
    assert not c.meets(math.nan, 1.0)
    assert not c.meets(None, 1.0)
    assert not c.meets(float("nan"), 0.0)


def test_criterion_is_frozen():
    c = AccuracyCriterion()
    with pytest.raises(AttributeError):
        c.tolerable_loss = 0.5


@pytest.mark.parametrize("loss", [-0.01, -1])
def test_negative_tolerable_loss(loss):
    with pytest.raises(ValueError, match="tolerable_loss.*>= 0"):
        AccuracyCriterion(tolerable_loss=loss)
    with pytest.raises(ValueError, match="tolerable_loss.*>= 0"):
        AccuracyCriterion(tolerable_loss=loss, criterion="absolute")


@pytest.mark.parametrize("loss", [1, 1.0, 1.5, 50])
def test_relative_loss_of_one_or_more_refused(loss):
    with pytest.raises(ValueError, match="tolerable_loss.*< 1.*relative"):
        AccuracyCriterion(tolerable_loss=loss, criterion="relative")


@pytest.mark.parametrize("loss", [1, 1.0, 1.5, 50])
def test_absolute_loss_of_one_or_more_allowed(loss):
    c = AccuracyCriterion(tolerable_loss=loss, criterion="absolute")
    assert c.tolerable_loss == float(loss)
    assert c.meets(10.0 - loss, 10.0)


def test_relative_loss_just_below_one_allowed():
    assert AccuracyCriterion(tolerable_loss=0.999).tolerance(2.0) == pytest.approx(1.998)


@pytest.mark.parametrize("name", ["Relative", "percent", "", None])
def test_unknown_criterion(name):
    with pytest.raises(ValueError, match="criterion"):
        AccuracyCriterion(criterion=name)


@pytest.mark.parametrize("loss", ["0.01", None, math.nan, True])
def test_tolerable_loss_not_a_number(loss):
    with pytest.raises(ValueError, match="tolerable_loss"):
        AccuracyCriterion(tolerable_loss=loss)


# ---------------------------------------------------------------- bad run inputs (through tune_space)


def test_run_unknown_precision_named():
    space = make_space()
    with pytest.raises(ValueError, match="precisions.*unknown precision 'int4'"):
        tune_space(space, never_called, precisions=("int8", "int4"), workers=0)


def test_run_precisions_fp32_only():
    with pytest.raises(ValueError, match="precisions"):
        tune_space(make_space(), never_called, precisions=("fp32",), workers=0)


def test_no_op_supports_run_precisions_conservative():
    space = TuningSpace([Op("conv1", "Conv2d", ("int8",)), Op("ln", "LayerNorm", ())])
    with pytest.raises(ValueError, match="nothing to tune"):
        tune_space(space, never_called, precisions=("bf16", "fp16"), workers=0)


def test_no_op_supports_anything():
    space = TuningSpace([Op("ln", "LayerNorm", ()), Op("emb", "Embedding", ())])
    with pytest.raises(ValueError, match="nothing to tune"):
        tune_space(space, never_called, workers=0)
    with pytest.raises(ValueError, match="nothing to tune"):
        tune_space(space, never_called, strategy="auto_mixed_precision", workers=0)


def test_no_op_supports_target_auto_mixed_precision():
    space = TuningSpace([Op("conv1", "Conv2d", ("int8", "fp16"))])
    # the target is bf16 (the first of bf16/fp16 among the run's precisions), which no op supports
    with pytest.raises(ValueError, match="bf16.*nothing to tune"):
        tune_space(space, never_called, strategy="auto_mixed_precision", workers=0)


def test_auto_mixed_precision_needs_bf16_or_fp16():
    space = TuningSpace([Op("conv1", "Conv2d")])
    with pytest.raises(ValueError, match="bf16 or fp16"):
        tune_space(space, never_called, strategy="auto_mixed_precision", precisions=("int8",), workers=0)


def test_op_supporting_none_stays_fp32():
    space = TuningSpace([Op("ln", "LayerNorm", ()), Op("conv1", "Conv2d", ("int8",)), Op("fc", "Linear", ())])
    calls = []

    def evaluate(config):
        calls.append(config)
        return 1.0

    res = tune_space(space, evaluate, workers=0)
    assert [t.config for t in res.trials] == [{"ln": "fp32", "conv1": "int8", "fc": "fp32"}]
    assert res.config == {"ln": "fp32", "conv1": "int8", "fc": "fp32"}
    assert all(c["ln"] == "fp32" and c["fc"] == "fp32" for c in calls)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_trials": -1}, "max_trials"),
        ({"max_trials": 1.5}, "max_trials"),
        ({"max_trials": 0}, r"max_trials=0 allows no trial.*give max_trials >= 1"),
        ({"eval_timeout": -1}, r"eval_timeout must be the seconds one evaluation may take, a number > 0 \(None or 0: no limit\)"),
        ({"eval_timeout": math.nan}, "eval_timeout"),
        ({"eval_timeout": math.inf}, "eval_timeout"),
        ({"eval_timeout": "5"}, "eval_timeout"),
        ({"eval_timeout": True}, "eval_timeout"),
        ({"timeout": -1}, "timeout"),
        ({"baseline": math.nan}, "baseline"),
        ({"baseline": "0.9"}, "baseline"),
        ({"strategy": "nope"}, "unknown strategy"),
    ],
)
def test_other_bad_run_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tune_space(make_space(), never_called, workers=0, **kwargs)


def test_bad_types():
    with pytest.raises(TypeError, match="TuningSpace"):
        tune_space([Op("a", "Conv2d")], never_called, workers=0)
    with pytest.raises(TypeError, match="callable"):
        tune_space(make_space(), 0.9, workers=0)
    with pytest.raises(TypeError, match="AccuracyCriterion"):
        tune_space(make_space(), never_called, accuracy=0.01, workers=0)
