"""An independent, literal transcription of docs/STRATEGIES.md, used as an oracle by the tests.

It deliberately shares no code with the library (no Config, no generators, no
CommittedPath): configs are plain dicts, the dedupe table is a dict keyed by
tuple(sorted(config.items())), the strategies are plain loops that call `accuracy_of()`,
and max_trials is an exception that unwinds the loop.

    configs, accuracies, result = reference_tune(ops, precisions, "conservative", evaluate)

`ops` is a list of (name, type, lower precisions) tuples in model order.
"""

from __future__ import annotations

import math

PREFIXES = ["conv", "matmul", "bmm", "linear"]
POOLS = ["bf16", "fp16", "int8_dynamic", "int8"]  # STRATEGIES.md: from the least to the most aggressive


class _OutOfTrials(Exception):
    """The next new trial would exceed max_trials."""


def _key(config):
    return tuple(sorted(config.items()))


def _is_all_fp32(config):
    for precision in config.values():
        if precision != "fp32":
            return False
    return True


def _call(evaluate, config):
    """The accuracy of one evaluation; None when it raised or gave NaN."""
    try:
        value = evaluate(dict(config))
    except Exception:
        return None
    value = float(value)
    if value != value:  # NaN
        return None
    return value


def reference_op_type_order(ops, priority=None):
    seen = []
    for _name, op_type, _precisions in ops:
        if op_type not in seen:
            seen.append(op_type)
    order = []
    if priority is None:
        for prefix in PREFIXES:
            for op_type in seen:
                if op_type in order:
                    continue
                if op_type.lower().startswith(prefix):
                    order.append(op_type)
    else:
        for op_type in priority:
            if op_type in seen and op_type not in order:
                order.append(op_type)
    for op_type in seen:
        if op_type not in order:
            order.append(op_type)
    return order


class _Walk:
    """The state of one reference run: the dedupe table and the committed trials."""

    def __init__(self, evaluate, baseline, tolerable_loss, criterion, higher_is_better, max_trials):
        self.evaluate = evaluate
        self.baseline = baseline
        self.tolerable_loss = tolerable_loss
        self.criterion = criterion
        self.higher_is_better = higher_is_better
        self.max_trials = max_trials
        self.evaluated = {}  # tuple(sorted(config.items())) -> accuracy (None: errored)
        self.configs = []
        self.accuracies = []

    def meets(self, accuracy):
        if accuracy is None or math.isnan(accuracy):
            return False
        if self.criterion == "relative":
            tol = abs(self.baseline) * self.tolerable_loss
        else:
            tol = self.tolerable_loss
        if self.higher_is_better:
            return accuracy >= self.baseline - tol
        return accuracy <= self.baseline + tol

    def accuracy_of(self, config):
        """Evaluate `config` unless it was evaluated before; a new one is a trial."""
        k = _key(config)
        if k in self.evaluated:
            return self.evaluated[k]
        if len(self.configs) >= self.max_trials:
            raise _OutOfTrials()
        accuracy = _call(self.evaluate, config)
        self.evaluated[k] = accuracy
        self.configs.append(dict(config))
        self.accuracies.append(accuracy)
        return accuracy


def _conservative(walk, ops, run_precisions, priority, state):
    accepted = {}
    for name, _type, _precisions in ops:
        accepted[name] = "fp32"
    for dtype in POOLS:
        if dtype not in run_precisions:
            continue
        for op_type in reference_op_type_order(ops, priority):
            group = []
            for name, t, precisions in ops:
                if t == op_type and dtype in precisions:
                    group.append(name)
            if len(group) == 0:
                continue
            candidate = dict(accepted)
            for name in group:
                candidate[name] = dtype
            if walk.meets(walk.accuracy_of(candidate)):
                accepted = candidate
                state["result"] = dict(accepted)
                continue
            for name in group:
                candidate = dict(accepted)
                candidate[name] = dtype
                if walk.meets(walk.accuracy_of(candidate)):
                    accepted = candidate
                    state["result"] = dict(accepted)


def _default_first(walk, ops, run_precisions, priority, state):
    """default_first (raytune_inc/strategies/default_first.py): every op at the most aggressive run precision it
    supports; if that misses the goal, conservative from the start."""
    default = {}
    for name, _t, precisions in ops:
        default[name] = "fp32"
        for dtype in POOLS:
            if dtype in run_precisions and dtype in precisions:
                default[name] = dtype
    if walk.meets(walk.accuracy_of(default)):
        state["result"] = default
        return
    _conservative(walk, ops, run_precisions, priority, state)


def _auto_mixed_precision(walk, ops, run_precisions, state):
    target = None
    for p in run_precisions:
        if p == "bf16" or p == "fp16":
            target = p
            break
    if target is None:
        raise ValueError("auto_mixed_precision needs bf16 or fp16")
    capable = [name for name, _t, precisions in ops if target in precisions]
    stage1 = {}
    for name, _t, _p in ops:
        stage1[name] = target if name in capable else "fp32"
    if _is_all_fp32(stage1):
        raise ValueError("no op supports the target precision")

    if walk.meets(walk.accuracy_of(stage1)):
        state["result"] = stage1
        return

    fallback = capable[::-1]
    ranked = []  # [accuracy, position in fallback, op name]
    for position, name in enumerate(fallback):
        candidate = dict(stage1)
        candidate[name] = "fp32"
        if _is_all_fp32(candidate):
            continue
        accuracy = walk.accuracy_of(candidate)
        ranked.append([accuracy, position, name])
        if walk.meets(accuracy):
            state["result"] = candidate
            return

    # Stable sort by accuracy, best first; errored (None or NaN) last. Written as an insertion sort.
    def better(a, b):
        """True when entry a must come before entry b."""
        a_bad = a[0] is None or math.isnan(a[0])
        b_bad = b[0] is None or math.isnan(b[0])
        if a_bad != b_bad:
            return b_bad
        if not a_bad and a[0] != b[0]:
            return a[0] > b[0] if walk.higher_is_better else a[0] < b[0]
        return a[1] < b[1]

    ranking = []
    for entry in ranked:
        i = len(ranking)
        while i > 0 and better(entry, ranking[i - 1]):
            i -= 1
        ranking.insert(i, entry)
    ranking = [entry[2] for entry in ranking]

    for k in range(2, len(ranking) + 1):
        candidate = dict(stage1)
        for name in ranking[:k]:
            candidate[name] = "fp32"
        if _is_all_fp32(candidate):
            continue
        accuracy = walk.accuracy_of(candidate)
        if walk.meets(accuracy):
            state["result"] = candidate
            return


def reference_tune(
    ops,
    precisions,
    strategy,
    evaluate,
    *,
    tolerable_loss=0.01,
    criterion="relative",
    higher_is_better=True,
    max_trials=100,
    baseline=None,
    op_type_priority=None,
    info=None,
):
    """Run `strategy` as STRATEGIES.md says; return (trial configs, their accuracies, result config or None).

    `info`, if given a dict, receives "stop_reason" ("finished" or "max_trials"),
    "baseline" and "result_accuracy".
    """
    ops = [(name, op_type, tuple(p)) for name, op_type, p in ops]
    all_fp32 = {name: "fp32" for name, _t, _p in ops}
    if baseline is None:
        baseline = float(evaluate(dict(all_fp32)))
    walk = _Walk(evaluate, baseline, tolerable_loss, criterion, higher_is_better, max_trials)
    walk.evaluated[_key(all_fp32)] = baseline
    state = {"result": None}
    stop_reason = "finished"
    try:
        if strategy == "conservative":
            _conservative(walk, ops, tuple(precisions), op_type_priority, state)
        elif strategy == "auto_mixed_precision":
            _auto_mixed_precision(walk, ops, tuple(precisions), state)
        elif strategy == "default_first":
            _default_first(walk, ops, tuple(precisions), op_type_priority, state)
        else:
            raise ValueError(f"unknown strategy {strategy}")
    except _OutOfTrials:
        stop_reason = "max_trials"
    result = state["result"]
    if info is not None:
        info["stop_reason"] = stop_reason
        info["baseline"] = baseline
        info["result_accuracy"] = None if result is None else walk.evaluated[_key(result)]
    return walk.configs, walk.accuracies, result
