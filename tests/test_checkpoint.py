"""Arrow checkpoints: durable history, torn records, exact resume, refusals, no code run on load."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from helpers import LoggedEvaluation, committed, outcome, own_ray_env, reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raytune_inc import AccuracyCriterion, ConservativeStrategy, HistoryError, HistoryWarning, load_history, tune_space
from raytune_inc.history.files import RUN_FILE, read_history
from raytune_inc.history.table import SCHEMA
from raytune_inc.history.writer import HistoryWriter
from raytune_inc.synthetic import AdditiveLossEvaluation, random_space

TESTS = Path(__file__).parent
OPS, SEED = 12, 3  # checkpoint_job.py's defaults


class Interrupted(BaseException):
    """Stands for the driver being stopped (KeyboardInterrupt, SIGTERM) in the middle of an evaluation."""


class Counting:
    """An evaluation that counts its calls by config and can stop the run at its n-th call."""

    def __init__(self, space, seed: int = 0, sensitive: float = 0.3, stop_at: int | None = None):
        self.space = space
        self.inner = AdditiveLossEvaluation(space, seed=seed, sensitive=sensitive)
        self.calls: list[str] = []
        self.stop_at = stop_at

    def __call__(self, config):
        if self.stop_at is not None and len(self.calls) + 1 == self.stop_at:
            raise Interrupted
        self.calls.append(self.space.config(config).key())
        return self.inner(config)


def recorded_keys(directory) -> set[str]:
    """Configs with a recorded result (ok or error): never to be evaluated again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HistoryWarning)
        table = load_history(directory)
    done = table.filter(pc.is_in(table["status"], pa.array(["ok", "error"])))
    return set(done["config"].to_pylist())


def last_segment(directory) -> Path:
    return sorted(Path(directory).glob("evaluations-*.arrows"))[-1]


@pytest.fixture
def space():
    return random_space(14, seed=5)


@pytest.fixture
def finished(space, tmp_path):
    """A finished sequential run with a checkpoint."""
    ev = Counting(space, seed=5)
    res = tune_space(space, ev, workers=0, checkpoint=tmp_path / "h")
    return res, tmp_path / "h"


# ---------------------------------------------------------------- writing and loading


def test_history_on_disk_is_the_result_history(finished):
    res, directory = finished
    table = load_history(directory)
    assert table.schema.equals(SCHEMA)
    assert table.equals(res.history)
    assert table.num_rows == 1 + len(res.trials)
    assert set(table["run_id"].to_pylist()) == {res.run_id}
    committed_rows = table.filter(table["commit_seq"].is_valid()).sort_by("commit_seq")
    assert committed_rows["commit_seq"].to_pylist() == list(range(1, len(res.trials) + 1))
    assert committed_rows["accuracy"].to_pylist() == [t.accuracy for t in res.trials]
    assert committed_rows["meets"].to_pylist() == [t.meets for t in res.trials]
    # plain pyarrow reads every file, nothing of ours needed
    run = pa.ipc.open_file(str(directory / RUN_FILE)).read_all().to_pylist()[0]
    assert run["run_id"] == res.run_id and run["format"] == 1
    fp = json.loads(run["fingerprint"])
    assert fp["tolerable_loss"] == 0.01 and fp["strategy"] == "conservative" and len(fp["space"]) == 14
    assert fp["raytune_inc"] and fp["environment"]["pyarrow"] == pa.__version__
    raw = pa.ipc.open_stream(str(last_segment(directory))).read_all()
    assert raw.num_rows == table.num_rows


def test_each_evaluation_is_on_disk_before_the_next_starts(space, tmp_path):
    seen = []

    def evaluate(config):
        seen.append(load_history(tmp_path).num_rows if (tmp_path / RUN_FILE).exists() else None)
        return AdditiveLossEvaluation(space, seed=5)(config)

    res = tune_space(space, evaluate, workers=0, checkpoint=tmp_path)
    assert seen[0] == 0  # the run record is written before the first evaluation
    assert seen == list(range(len(seen)))  # every earlier evaluation was already saved
    assert len(seen) == 1 + len(res.trials)


def test_resume_of_a_finished_run_evaluates_nothing(finished, space):
    res, directory = finished
    ev = Counting(space, seed=5)
    again = tune_space(space, ev, workers=0, checkpoint=directory, resume=True)
    assert ev.calls == [] and again.evaluations == 0
    assert committed(again) == committed(res) and again.config == res.config and again.baseline == res.baseline
    assert again.run_id == res.run_id
    assert again.history.equals(res.history) and load_history(directory).equals(res.history)


def test_resume_of_a_finished_run_starts_no_ray(finished, space, monkeypatch):
    res, directory = finished
    import raytune_inc.ray_executor as driver

    def no_ray():
        raise AssertionError("Ray started although every result was recorded")

    monkeypatch.setattr(driver, "ray_session", no_ray)
    again = tune_space(space, Counting(space, seed=5), workers=4, checkpoint=directory, resume=True)
    assert committed(again) == committed(res) and again.evaluations == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_ops=st.integers(2, 12),
    seed=st.integers(0, 10_000),
    strategy=st.sampled_from(["conservative", "auto_mixed_precision"]),
    stops=st.lists(st.integers(1, 25), min_size=1, max_size=3),
    given_baseline=st.booleans(),
)
def test_interrupted_and_resumed_runs_commit_what_an_uninterrupted_run_commits(
    tmp_path_factory, n_ops, seed, strategy, stops, given_baseline
):
    space = random_space(n_ops, seed=seed)
    baseline = 0.95 if given_baseline else None
    accuracy = AccuracyCriterion(0.004)
    reference = tune_space(space, Counting(space, seed), strategy, accuracy, workers=0, baseline=baseline)
    directory = tmp_path_factory.mktemp("h")
    evaluated: list[str] = []
    for i, stop in enumerate([*stops, None]):
        before = recorded_keys(directory) if i else set()
        ev = Counting(space, seed, stop_at=stop)
        try:
            res = tune_space(space, ev, strategy, accuracy, workers=0, baseline=baseline, checkpoint=directory, resume=i > 0)
        except Interrupted:
            res = None
        assert not before & set(ev.calls), "a recorded result was evaluated again"
        evaluated += ev.calls
        if res is not None:
            break
    assert committed(res) == committed(reference) and res.config == reference.config
    assert len(evaluated) == len(set(evaluated)) == reference.evaluations  # every config evaluated once, in all
    history = load_history(directory)
    assert history.equals(res.history)
    assert history["trial_id"].to_pylist() == sorted(set(history["trial_id"].to_pylist()))
    commits = history.filter(history["commit_seq"].is_valid()).sort_by("commit_seq")
    assert commits["accuracy"].to_pylist() == [t.accuracy for t in reference.trials]


def test_resume_can_raise_max_trials(space, tmp_path):
    reference = tune_space(space, Counting(space, seed=5), workers=0)
    first = tune_space(space, Counting(space, seed=5), workers=0, max_trials=4, checkpoint=tmp_path)
    assert first.stop_reason == "max_trials" and len(first.trials) == 4
    ev = Counting(space, seed=5)
    res = tune_space(space, ev, workers=0, checkpoint=tmp_path, resume=True)
    assert committed(res) == committed(reference)
    assert len(ev.calls) == reference.evaluations - first.evaluations
    assert sorted(Path(tmp_path).glob("evaluations-*.arrows"))[-1].name == "evaluations-0001.arrows"


def test_a_recorded_baseline_failure_is_evaluated_again(space, tmp_path):
    def broken(config):
        raise RuntimeError("no GPU memory")

    from raytune_inc import TuningError

    with pytest.raises(TuningError, match="no GPU memory"):
        tune_space(space, broken, workers=0, checkpoint=tmp_path)
    assert load_history(tmp_path)["status"].to_pylist() == ["error"]
    res = tune_space(space, Counting(space, seed=5), workers=0, checkpoint=tmp_path, resume=True)
    assert res.baseline == 0.95
    assert load_history(tmp_path)["status"].to_pylist()[:2] == ["error", "ok"]


def test_resume_on_an_empty_or_missing_directory_starts_a_new_history(space, tmp_path):
    for directory in (tmp_path / "new", tmp_path):
        res = tune_space(space, Counting(space, seed=5), workers=0, checkpoint=directory, resume=True)
        assert load_history(directory).equals(res.history)


# ---------------------------------------------------------------- torn records


def test_every_cut_of_the_last_file_keeps_the_rows_before_it(finished):
    res, directory = finished
    segment = last_segment(directory)
    data = segment.read_bytes()
    full = load_history(directory)
    # where each record ends: the schema message, then one record batch per save
    with pa.OSFile(str(segment)) as source:
        reader = pa.ipc.open_stream(source)
        ends = [source.tell()]
        for _ in reader:
            ends.append(source.tell())
    assert len(ends) == 1 + full.num_rows
    for cut in sorted({*range(0, len(data), max(1, len(data) // 150)), *ends, *(e - 1 for e in ends), len(data) - 1}):
        segment.write_bytes(data[:cut])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = load_history(directory)
        kept = sum(e <= cut for e in ends[1:])
        assert table.equals(full.slice(0, kept)), f"cut at byte {cut}: the rows before it changed"
        torn = [str(w.message) for w in caught if issubclass(w.category, HistoryWarning)]
        if cut in (0, *ends):  # a whole number of records: nothing torn
            assert torn == [], (cut, torn)
        else:
            assert len(torn) == 1 and f"the {kept} row{'s' if kept != 1 else ''} before it are kept" in torn[0], (cut, torn)
    segment.write_bytes(data)
    assert load_history(directory).equals(full)


def test_resume_after_a_torn_record_repairs_the_file_and_finishes(finished, space):
    res, directory = finished
    segment = last_segment(directory)
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 40])  # the last record is torn
    ev = Counting(space, seed=5)
    with pytest.warns(HistoryWarning, match=rf"the {res.history.num_rows - 1} rows before it are kept"):
        again = tune_space(space, ev, workers=0, checkpoint=directory, resume=True)
    assert len(ev.calls) == 1  # only the torn one is evaluated again
    assert committed(again) == committed(res)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: loading it again warns no more
        assert load_history(directory).num_rows == res.history.num_rows


# ---------------------------------------------------------------- refusals


def test_a_history_of_a_different_run_is_refused_naming_what_differs(finished, space):
    res, directory = finished
    with pytest.raises(HistoryError, match=r"tolerable_loss 0\.01 != 0\.02"):
        tune_space(space, Counting(space), accuracy=AccuracyCriterion(0.02), workers=0, checkpoint=directory, resume=True)
    with pytest.raises(HistoryError, match=r'precisions \["bf16", "fp16", "int8"\] != \["int8"\]'):
        tune_space(space, Counting(space), precisions=("int8",), workers=0, checkpoint=directory, resume=True)
    with pytest.raises(HistoryError, match=r'strategy "conservative" != "auto_mixed_precision"'):
        tune_space(space, Counting(space), "auto_mixed_precision", workers=0, checkpoint=directory, resume=True)
    with pytest.raises(HistoryError, match=r"op_type_priority"):
        tune_space(space, Counting(space), ConservativeStrategy(["Linear"]), workers=0, checkpoint=directory, resume=True)
    with pytest.raises(HistoryError, match=r"baseline null != 0\.9"):
        tune_space(space, Counting(space), baseline=0.9, workers=0, checkpoint=directory, resume=True)
    other = random_space(14, seed=6)
    with pytest.raises(HistoryError, match=r"space: op #\d+ '.*' \(.*\) != '.*' \(.*\)"):
        tune_space(other, Counting(other), workers=0, checkpoint=directory, resume=True)
    bigger = random_space(15, seed=5)
    with pytest.raises(HistoryError, match=r"space: 14 ops != 15 ops"):
        tune_space(bigger, Counting(bigger), workers=0, checkpoint=directory, resume=True)
    assert load_history(directory).equals(res.history)  # nothing was touched


def test_a_directory_with_a_history_is_not_overwritten_without_resume(finished, space):
    res, directory = finished
    with pytest.raises(HistoryError, match="already holds a history.*resume=True"):
        tune_space(space, Counting(space), workers=0, checkpoint=directory)
    assert load_history(directory).equals(res.history)


def test_a_directory_in_use_by_another_run_is_refused(finished, space):
    res, directory = finished
    run_fp = read_history(directory).fingerprint
    store, _ = HistoryWriter.open(directory, res.run_id, run_fp, resume=True)
    try:
        with pytest.raises(HistoryError, match="in use by another run"):
            tune_space(space, Counting(space, seed=5), workers=0, checkpoint=directory, resume=True)
    finally:
        store.close()
    tune_space(space, Counting(space, seed=5), workers=0, checkpoint=directory, resume=True)


@pytest.mark.parametrize("where", ["missing", "empty", "file"])
def test_load_history_of_no_history_is_a_clear_error(tmp_path, where):
    target = {"missing": tmp_path / "nope", "empty": tmp_path, "file": tmp_path / "f"}[where]
    if where == "file":
        target.write_text("x")
    message = {"missing": "no such directory", "empty": "an empty directory", "file": "not a directory"}[where]
    with pytest.raises(HistoryError, match=message):
        load_history(target)


def test_garbage_files_are_not_a_history(finished, space, tmp_path):
    res, directory = finished
    segment = last_segment(directory)
    good = segment.read_bytes()
    segment.write_bytes(os.urandom(3000))
    with pytest.raises(HistoryError, match=r"evaluations-0000\.arrows is not a raytune-inc history file"):
        load_history(directory)
    with pytest.raises(HistoryError, match="is not a raytune-inc history file"):
        tune_space(space, Counting(space, seed=5), workers=0, checkpoint=directory, resume=True)
    # valid Arrow, but not our columns
    with pa.OSFile(str(segment), "wb") as f, pa.ipc.new_stream(f, pa.schema([("x", pa.int64())])) as w:
        w.write_table(pa.table({"x": [1, 2]}))
    with pytest.raises(HistoryError, match="its columns are x: int64"):
        load_history(directory)
    segment.write_bytes(good)
    (directory / RUN_FILE).write_bytes(b"PAR1 this is not arrow")
    with pytest.raises(HistoryError, match=r"run\.arrow is not a raytune-inc history file \(not an Arrow file"):
        load_history(directory)


# ---------------------------------------------------------------- nothing runs on load


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_history_cannot_run_code_when_loaded(finished, tmp_path):
    res, directory = finished
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    # 1. An Arrow "Python extension type" column: pyarrow < 14 unpickled its metadata on read.
    fields = [
        f.with_metadata({b"ARROW:extension:name": b"arrow.py_extension_type", b"ARROW:extension:metadata": payload})
        if f.name == "accuracy"
        else f
        for f in SCHEMA
    ]
    crafted = pa.schema(fields, metadata={b"raytune_inc": b"evaluations"})
    table = res.history.cast(crafted)
    segment = last_segment(directory)
    with pa.OSFile(str(segment), "wb") as f, pa.ipc.new_stream(f, crafted) as w:
        w.write_table(table)
    with pytest.raises(HistoryError, match="not a raytune-inc history file"):
        load_history(directory)
    # 2. A pickle where the fingerprint's JSON should be.
    run = pa.ipc.open_file(str(directory / RUN_FILE)).read_all()
    run = run.set_column(3, "fingerprint", pa.array([payload.decode("latin-1")]))
    with pa.OSFile(str(directory / RUN_FILE), "wb") as f, pa.ipc.new_file(f, run.schema) as w:
        w.write_table(run)
    with pytest.raises(HistoryError, match="fingerprint cannot be read"):
        load_history(directory)
    # 3. The same in a fresh interpreter, where nothing of the test is imported.
    script = f"from raytune_inc import load_history\ntry:\n    load_history({str(directory)!r})\nexcept ValueError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "not a raytune-inc history file" in out.stdout, out.stderr[-2000:]
    assert not marker.exists(), "loading a crafted history ran code"
    for source in (Path(__file__).parents[1] / "raytune_inc" / "history").glob("*.py"):
        assert "pickle" not in source.read_text().replace("pickled", ""), source


# ---------------------------------------------------------------- with Ray, and SIGKILL


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_a_parallel_run_stopped_early_resumes_on_either_executor(tmp_path):
    space, expected = random_space(OPS, seed=SEED), reference(OPS, SEED)
    log = tmp_path / "log"
    # 20 trials of 0.5 s on 3 evaluators need over 3 s: the run times out mid-way, also on a fast machine.
    first = tune_space(space, LoggedEvaluation(space, SEED, log, 0.5), workers=3, timeout=3.0, checkpoint=tmp_path / "h")
    assert first.stop_reason == "timeout"
    history = load_history(tmp_path / "h")
    assert history.equals(first.history)
    statuses = history["status"].to_pylist()
    speculative = history.filter(pc.and_(history["commit_seq"].is_null(), pc.equal(history["status"], "ok")))
    assert speculative.num_rows >= 1 or "cancelled" in statuses, statuses  # more than the committed path is kept
    for workers, directory in ((0, tmp_path / "h0"), (2, tmp_path / "h2")):
        shutil.copytree(tmp_path / "h", directory)
        before, start = recorded_keys(directory), len(_lines(log))
        res = tune_space(space, LoggedEvaluation(space, SEED, log, 0.0), workers=workers, checkpoint=directory, resume=True)
        assert not before & set(_lines(log)[start:]), f"workers={workers}: a recorded result was evaluated again"
        assert outcome(res) == expected
        assert load_history(directory).equals(res.history)
        assert res.run_id == first.run_id


def _job(directory, log, *args, timeout=300):
    return subprocess.Popen(
        [sys.executable, str(TESTS / "checkpoint_job.py"), str(directory), str(log), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=own_ray_env(),
    )


def _wait_for(condition, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the job ended before the kill point: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "kill point not reached"
        time.sleep(0.005)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _finish(directory, log, *args):
    """Resume the job to its end; check it evaluated nothing recorded; return its result."""
    before, start = recorded_keys(directory), len(_lines(log))
    proc = _job(directory, log, "--resume", *args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert not before & set(_lines(log)[start:]), "a recorded result was evaluated again"
    return json.loads(out.strip().splitlines()[-1])


def _kill_when(directory, log, condition, *args):
    """Start (or resume) the job and SIGKILL it when `condition()` holds (None: it kills itself);
    check it evaluated nothing recorded."""
    before = recorded_keys(directory) if (Path(directory) / RUN_FILE).exists() else set()
    start = len(_lines(log))
    proc = _job(directory, log, *args)
    try:
        if condition is not None:
            _wait_for(condition, proc)
            proc.send_signal(signal.SIGKILL)
    finally:
        err = proc.communicate(timeout=300)[1]
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    assert not before & set(_lines(log)[start:]), "a recorded result was evaluated again"


def _check_final(result, expected, directory, log):
    assert result["config"] == expected["config"] and result["trials"] == expected["trials"]
    history = load_history(directory)
    commits = history.filter(history["commit_seq"].is_valid()).sort_by("commit_seq")
    assert commits["accuracy"].to_pylist() == [t[1] for t in expected["trials"]]
    evaluated = _lines(log)
    ok = history.filter(pc.is_in(history["status"], pa.array(["ok", "error"])))
    assert sorted(set(ok["config"].to_pylist())) == sorted(ok["config"].to_pylist())  # one result per config
    assert set(ok["config"].to_pylist()) <= set(evaluated)


@pytest.mark.slow
def test_sigkill_during_ray_start_then_mid_trial_then_resume(tmp_path):
    expected = reference(OPS, SEED)
    directory, log = tmp_path / "h", tmp_path / "log"
    # 1. during Ray start: the run record is written first, nothing was evaluated yet
    _kill_when(directory, log, lambda: (directory / RUN_FILE).exists(), "--workers", 2)
    assert _lines(log) == [] and load_history(directory).num_rows == 0
    # 2. mid-trial, with evaluations in flight on two evaluators
    _kill_when(directory, log, lambda: len(_lines(log)) >= 12, "--workers", 2, "--resume")
    assert load_history(directory).num_rows >= 6  # what finished before the kills is kept
    _check_final(_finish(directory, log, "--workers", 2), expected, directory, log)


MODEL_SEED = 1  # seeded_mlp(1): 8 trials over int8 and bf16, passing and failing ones


def _committed(directory) -> int:
    """The committed trials in the history in `directory` as it is now (0 before it can be read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HistoryWarning)
            commits = load_history(directory)["commit_seq"]
        return len(commits) - commits.null_count
    except HistoryError:
        return 0


@pytest.fixture(scope="module")
def model_reference(tmp_path_factory):
    """The model-level job run once without interruption (workers=0): its printed result, and the configs it evaluated."""
    directory = tmp_path_factory.mktemp("model")
    proc = _job(directory / "h", directory / "log", "--model", "--seed", MODEL_SEED, "--cost", 0)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), _lines(directory / "log")


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_sigkill_mid_run_of_a_model_then_resume(tmp_path, workers, model_reference):
    # tune(model, ..., checkpoint=DIR): the model is rebuilt from its seed in each process (its digest is in the
    # fingerprint), and each evaluation takes 0.3 s, so that the kill lands with trials still to come.
    expected, evaluated_once = model_reference
    directory, log = tmp_path / "h", tmp_path / "log"
    args = ("--model", "--seed", MODEL_SEED, "--cost", 0.3, "--workers", workers)
    _kill_when(directory, log, lambda: len(_lines(log)) >= 5 and _committed(directory) >= 3, *args)
    assert 3 <= _committed(directory) < len(expected["trials"])  # killed mid-run
    result = _finish(directory, log, *args)  # and nothing recorded was evaluated again
    _check_final(result, expected, directory, log)
    assert result["accuracy"] == expected["accuracy"]
    evaluated = _lines(log)
    # Evaluated again: at most the evaluations in flight at the kill.
    assert len(evaluated) - len(set(evaluated)) <= max(1, workers), evaluated
    if workers == 0:
        assert sorted(set(evaluated)) == sorted(evaluated_once)
    else:  # and speculative ones besides
        assert set(evaluated_once) <= set(evaluated)


@pytest.mark.slow
def test_sigkill_between_trials_and_while_writing_then_resume(tmp_path):
    expected = reference(OPS, SEED)
    directory, log = tmp_path / "h", tmp_path / "log"
    # 1. between trials: right after the 5th durable save (the baseline and 4 trials)
    _kill_when(directory, log, None, "--kill-after-save", 5)
    assert load_history(directory).num_rows == 5 == len(_lines(log))
    # 2. halfway through writing the 3rd save of the resumed run: a torn last record
    _kill_when(directory, log, None, "--resume", "--kill-mid-save", 3)
    with pytest.warns(HistoryWarning, match="the 2 rows before it are kept"):
        assert load_history(directory).num_rows == 5 + 2
    # 3. between trials again, in the resumed run, once more, then to the end
    _kill_when(directory, log, None, "--resume", "--kill-after-save", 1)
    result = _finish(directory, log)
    _check_final(result, expected, directory, log)
    # the torn evaluation was re-run, nothing else twice
    evaluated = _lines(log)
    assert len(evaluated) == len(set(evaluated)) + 1
