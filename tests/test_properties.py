"""Property tests: on random spaces and random deterministic evaluations, the library does what
tests/reference.py (a plain transcription of STRATEGIES.md) does, and keeps the shared rules.

The evaluations are additive with losses from a small discrete set, so configs often tie with
each other and land exactly on the tolerance boundary.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reference import reference_op_type_order, reference_tune  # pytest's prepend import mode puts tests/ on sys.path

from raytune_inc import AccuracyCriterion, ConservativeStrategy, Op, TuningSpace, tune_space
from raytune_inc.strategies import DefaultFirstStrategy

TYPES = ["Conv2d", "Linear", "MatMul", "BMM", "LayerNorm", "Embedding"]
LOWER = ["bf16", "fp16", "int8_dynamic", "int8"]
# loss units: binary ones keep sums exact (real ties on the boundary); decimal ones behave like real metrics
UNITS = [1 / 64, 1 / 16, 0.005, 0.01]
BASELINES = [1.0, 0.75, 0.5, 0.0, -0.5, -1.0, 10.0, 0.76]
TOLERANCES = [0.0, 0.01, 0.02, 1 / 64, 1 / 32, 0.125]


@st.composite
def problems(draw):
    n = draw(st.integers(1, 8))
    ops = []
    for i in range(n):
        op_type = draw(st.sampled_from(TYPES))
        precisions = draw(st.lists(st.sampled_from(LOWER), unique=True, max_size=4))
        ops.append((f"op{i}", op_type, tuple(precisions)))
    run_precisions = tuple(draw(st.lists(st.sampled_from(LOWER), unique=True, min_size=1, max_size=4)))
    unit = draw(st.sampled_from(UNITS))
    # integer loss units per (op, precision); a few negative ones (a lower precision that helps)
    losses = {}
    for name, _t, precisions in ops:
        for p in precisions:
            losses[(name, p)] = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 4, -1]))
    failing = set()
    if draw(st.booleans()):
        # some (op, precision) pairs make the evaluation fail (raise or NaN)
        pairs = sorted(losses)
        if pairs:
            failing = set(draw(st.lists(st.sampled_from(pairs), max_size=2)))
    higher = draw(st.booleans())
    criterion = draw(st.sampled_from(["relative", "absolute"]))
    tol = draw(st.sampled_from(TOLERANCES))
    baseline = draw(st.sampled_from(BASELINES))
    given_baseline = draw(st.sampled_from([None, None, None, "same", "other"]))
    max_trials = draw(st.one_of(st.none(), st.integers(1, 12)))
    rounded = draw(st.booleans())
    priority = None
    if draw(st.booleans()):
        priority = draw(st.lists(st.sampled_from(TYPES + ["GRU"]), max_size=4))
    return {
        "ops": ops,
        "run_precisions": run_precisions,
        "unit": unit,
        "losses": losses,
        "failing": failing,
        "fail_with_nan": draw(st.booleans()),
        "higher": higher,
        "criterion": criterion,
        "tol": tol,
        "baseline": baseline,
        "given_baseline": given_baseline,
        "max_trials": max_trials,
        "rounded": rounded,
        "priority": priority,
    }


class Evaluate:
    """A deterministic evaluation built from a problem; counts its calls."""

    def __init__(self, problem):
        self.p = problem
        self.calls = 0

    def __call__(self, config):
        self.calls += 1
        p = self.p
        if any(item in p["failing"] for item in config.items()):
            if p["fail_with_nan"]:
                return math.nan
            raise RuntimeError("this op cannot run at this precision")
        total = sum(p["losses"].get(item, 0) for item in sorted(config.items()))
        sign = -1 if p["higher"] else 1
        value = p["baseline"] + sign * total * p["unit"]
        if p["rounded"]:
            value = round(value * 100) / 100
        return value


def run_both(problem, strategy):
    ops = problem["ops"]
    space = TuningSpace([Op(name, t, precisions) for name, t, precisions in ops])
    baseline = None
    if problem["given_baseline"] == "same":
        baseline = Evaluate(problem)({name: "fp32" for name, _t, _p in ops})
    elif problem["given_baseline"] == "other":
        baseline = problem["baseline"] + 0.0625
    crit = AccuracyCriterion(tolerable_loss=problem["tol"], criterion=problem["criterion"], higher_is_better=problem["higher"])
    kwargs = {} if problem["max_trials"] is None else {"max_trials": problem["max_trials"]}
    strategy_arg = strategy
    if strategy == "conservative" and problem["priority"] is not None:
        strategy_arg = ConservativeStrategy(op_type_priority=problem["priority"])
    if strategy == "default_first" and problem["priority"] is not None:
        strategy_arg = DefaultFirstStrategy(ConservativeStrategy(op_type_priority=problem["priority"]))
    lib_eval = Evaluate(problem)
    try:
        res = tune_space(
            space,
            lib_eval,
            strategy=strategy_arg,
            accuracy=crit,
            precisions=problem["run_precisions"],
            workers=0,
            baseline=baseline,
            **kwargs,
        )
    except ValueError as exc:
        assume("nothing to tune" not in str(exc) and "needs bf16 or fp16" not in str(exc))
        raise
    # the run is valid, so the reference must find something to tune too
    ref_eval = Evaluate(problem)
    info = {}
    ref = reference_tune(
        ops,
        problem["run_precisions"],
        strategy,
        ref_eval,
        tolerable_loss=problem["tol"],
        criterion=problem["criterion"],
        higher_is_better=problem["higher"],
        max_trials=100 if problem["max_trials"] is None else problem["max_trials"],
        baseline=baseline,
        op_type_priority=problem["priority"] if strategy in ("conservative", "default_first") else None,
        info=info,
    )
    return space, crit, res, lib_eval, ref, ref_eval, info, baseline


def check_common(problem, space, crit, res, lib_eval, ref, ref_eval, info, baseline):
    ref_configs, ref_accuracies, ref_result = ref
    # the library equals the reference
    assert [t.config for t in res.trials] == ref_configs
    assert [t.accuracy for t in res.trials] == ref_accuracies
    assert res.config == ref_result
    assert res.accuracy == info["result_accuracy"]
    assert res.baseline == info["baseline"]
    assert res.stop_reason == info["stop_reason"]
    assert lib_eval.calls == ref_eval.calls
    # committed trials: distinct, never all-fp32, within max_trials
    keys = [tuple(sorted(t.config.items())) for t in res.trials]
    assert len(set(keys)) == len(keys)
    assert not any(all(p == "fp32" for p in t.config.values()) for t in res.trials)
    max_trials = 100 if problem["max_trials"] is None else problem["max_trials"]
    assert len(res.trials) <= max_trials
    # every trial's config uses precisions its ops support and the run enabled
    for t in res.trials:
        assert list(t.config) == list(space.names)
        for op in space:
            p = t.config[op.name]
            assert p == "fp32" or (p in op.precisions and p in problem["run_precisions"])
        assert t.meets == crit.meets(t.accuracy, res.baseline)
        assert (t.accuracy is None) == (t.error is not None)
    # dedupe: every evaluation is the baseline (unless given) or a committed trial
    assert lib_eval.calls == (0 if baseline is not None else 1) + len(res.trials)
    assert res.history.num_rows == lib_eval.calls
    # the result meets the goal, or there is none
    if res.config is None:
        assert res.accuracy is None
    else:
        assert crit.meets(res.accuracy, res.baseline)
        assert not all(p == "fp32" for p in res.config.values())
        assert res.accuracy == Evaluate(problem)(res.config)
    if res.stop_reason == "max_trials":
        assert len(res.trials) == max_trials
    else:
        assert res.stop_reason == "finished"


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])


@SETTINGS
@given(problems())
def test_conservative_equals_reference(problem):
    out = run_both(problem, "conservative")
    check_common(problem, *out)
    res = out[2]
    met = [t for t in res.trials if t.meets]
    # the result is the last committed trial that met the goal
    assert res.config == (met[-1].config if met else None)
    if met:
        assert res.accuracy == met[-1].accuracy


@SETTINGS
@given(problems())
def test_default_first_equals_reference(problem):
    out = run_both(problem, "default_first")
    check_common(problem, *out)
    res = out[2]
    if res.trials:  # the first trial is the default config: every op at the most aggressive run precision it has
        order = ["bf16", "fp16", "int8_dynamic", "int8"]
        for name, _t, precisions in problem["ops"]:
            mine = [p for p in order if p in precisions and p in problem["run_precisions"]]
            assert res.trials[0].config[name] == (mine[-1] if mine else "fp32")
        assert res.trials[0].stage == "default"
        if res.trials[0].meets:  # it ends the walk
            assert len(res.trials) == 1 and res.config == res.trials[0].config


@SETTINGS
@given(problems())
def test_auto_mixed_precision_equals_reference(problem):
    out = run_both(problem, "auto_mixed_precision")
    check_common(problem, *out)
    res = out[2]
    met = [i for i, t in enumerate(res.trials) if t.meets]
    # it stops at the first config that meets: at most one, the last trial, and it is the result
    assert len(met) <= 1
    if met:
        assert met[0] == len(res.trials) - 1
        assert res.config == res.trials[-1].config
        assert res.stop_reason == "finished"
    else:
        assert res.config is None
    # stage 1 comes first: every capable op at the target precision
    if res.trials:
        target = next(p for p in problem["run_precisions"] if p in ("bf16", "fp16"))
        first = res.trials[0].config
        assert all(first[name] == (target if target in precisions else "fp32") for name, _t, precisions in problem["ops"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(TYPES + ["conv_relu", "LinearX", "bmm_fused", "QConv"]), min_size=1, max_size=8),
    st.one_of(st.none(), st.lists(st.sampled_from(TYPES + ["GRU"]), max_size=4)),
)
def test_op_type_order_equals_reference(types, priority):
    from raytune_inc.strategies import op_type_order

    ops = [(f"op{i}", t, ("int8",)) for i, t in enumerate(types)]
    space = TuningSpace([Op(*op) for op in ops])
    order = op_type_order(space, priority)
    assert order == reference_op_type_order(ops, priority)
    assert sorted(order) == sorted(set(types))
