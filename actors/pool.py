"""A pool of evaluator actors: idle handles, in-flight futures, replacement of dead ones.

Evaluators are spread over the cluster's nodes (Ray's SPREAD scheduling, within the
resources each asks for), so a lost node takes few of them, and a replacement goes to a
node that has room. Policy (what to evaluate) lives in the driver; the pool only runs
what it is given.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import OutOfMemoryError, RayActorError, RayTaskError, TaskCancelledError, WorkerCrashedError

from raytune_inc.errors import EvaluatorStartError
from raytune_inc.evaluation import EvaluateFn, evaluate_config
from raytune_inc.records import Cancelled, Failed, Lost
from raytune_inc.running import Goal
from raytune_inc.space import Config, TuningSpace

from .evaluator import EvaluationRecord, RemoteEvaluator

LOST_ERRORS = (RayActorError, WorkerCrashedError, OutOfMemoryError)


@dataclass
class _Slot:
    name: str
    actor: Any
    share: tuple[float, float]
    node: str = ""  # its Ray node id, once it is up


@dataclass
class Here:
    """The driver's own process lent as an evaluator until the first evaluator is up (`EvaluatorPool.lend_here`):
    `evaluate` runs in a thread of this process; `release()` frees what it kept once it is no longer lent."""

    evaluate: EvaluateFn
    release: Callable[[], None]
    timeout: float | None = None  # eval_timeout: an evaluation here stops itself (it cannot be killed)
    # Held around each evaluation here (not timed): what else uses the same model takes it too.
    lock: contextlib.AbstractContextManager = field(default_factory=contextlib.nullcontext)


class EvaluatorPool:
    """Evaluator actors: starting ones, idle ones, and the ones running a task.

    An evaluator starts in two steps (see `actors.evaluator`): the actor comes up, importing
    `warm`; then it loads the space and the evaluation. `launch()` starts evaluators, at most
    `max_starting` at a time: a start imports torch and loads the model, seconds of CPU, so where
    evaluators outnumber the CPUs, starting them all at once would delay every one of them; the
    next starts as one comes up. The pool may be launched before the evaluation exists
    (`load(space, evaluate)` hands it over then, to those already up as well), so that the actors
    come up while the driver calibrates and evaluates the baseline. Evaluators take work as soon
    as each one is up, so the pool's start-up overlaps the first trials. `await start()` waits
    until one is up. `startup` has each evaluator's seconds from its start to its being up.

    Until the first evaluator is up, the driver's own process may evaluate the trials the committed
    path waits for (`lend_here`; `submit(..., here=True)` while `here_idle`), one at a time, in a
    thread: a short tuning does not wait for Ray's processes to import torch and load the model. It
    is lent no more once an evaluator is up (its evaluation in flight ends first), and then frees
    what it kept (`Here.release`).
    """

    def __init__(
        self,
        shares: list[tuple[float, float]],
        name_prefix: str = "raytune-inc",
        max_starting: int | None = None,
        warm: tuple[str, ...] = (),
    ):
        """One evaluator per entry of `shares`: its (num_cpus, num_gpus); a dead one is replaced with the same share.
        `max_starting`: how many start at once (None: all); `warm`: modules each imports as it comes up."""
        if not shares:
            raise ValueError("an evaluator pool needs at least one evaluator")
        self._loaded: tuple[Any, Any] | None = None  # (space, evaluation) refs in the object store, once given
        self._shares = list(shares)
        self._waiting: deque[tuple[float, float]] = deque(shares)  # shares of evaluators not started yet
        self._max_starting = max(1, max_starting) if max_starting is not None else len(shares)
        self._prefix = name_prefix
        self._warm = tuple(warm)
        self._started = 0
        self._start_times: dict[str, float] = {}
        self.startup: dict[str, float] = {}  # evaluator name -> seconds from its start to its being up
        self._start_deaths = 0  # evaluators in a row that died while starting (their node lost, OOM kill)
        self._booting: list[_Slot] = []  # actors coming up, with nothing to load yet
        self.idle: deque[_Slot] = deque()
        self.starting: dict[concurrent.futures.Future, _Slot] = {}  # load() -> evaluator
        self.in_flight: dict[asyncio.Future, tuple[_Slot, Any]] = {}
        self._refs: dict[asyncio.Future, ray.ObjectRef] = {}  # an evaluator's task in flight -> its Ray reference
        self._awaitable: dict[concurrent.futures.Future, asyncio.Future] = {}
        self._here: Here | None = None  # the driver's process, while it is lent as an evaluator
        self._here_slot: _Slot | None = None
        self._here_thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._space: TuningSpace | None = None
        self._start_deadline: float | None = None  # by when the first evaluator must be up (see `start`)
        self._start_timeout = 0.0

    @property
    def _evaluator_up(self) -> bool:
        """An evaluator is up: idle, or running a task."""
        return bool(self.idle) or any(slot is not self._here_slot for slot, _ in self.in_flight.values())

    def lend_here(self, here: Here, space: TuningSpace) -> None:
        """Let the driver's process evaluate committed trials until an evaluator is up (see the class)."""
        if self._evaluator_up:
            return
        self._here, self._space = here, space
        self._here_slot = _Slot(f"{self._prefix}-driver", None, (0.0, 0.0), ray.get_runtime_context().get_node_id())
        self._here_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raytune-inc-driver-evaluation")

    @property
    def here_idle(self) -> bool:
        """The driver's process is lent and free: it may take a committed trial (`submit(..., here=True)`)."""
        return self._here is not None and not any(slot is self._here_slot for slot, _ in self.in_flight.values())

    def _evaluate_here(self, precisions: tuple[str, ...], goal: Goal | None) -> EvaluationRecord:
        slot, here = self._here_slot, self._here
        config = Config(self._space, precisions)
        with here.lock:
            return evaluate_config(
                here.evaluate, config, worker=slot.name, device="cpu", node=slot.node, timeout=here.timeout, goal=goal
            ).record()

    def _stop_lending(self) -> None:
        """Once an evaluator is up and the driver's process has no trial in flight: it takes no more, and frees what
        it kept."""
        if self._here is not None and self.here_idle and self._evaluator_up:
            self._end_lending()

    def _end_lending(self) -> None:
        """Wait for the trial in the driver's process, if any (the model must be whole again before anything else uses
        it), then free what it kept, once."""
        here, self._here = self._here, None
        self._here_thread.shutdown(wait=True)
        if here is not None:
            here.release()

    def load(self, space: TuningSpace, evaluate: EvaluateFn) -> None:
        """Hand the space and the evaluation to every evaluator, those already up and those to come."""
        try:
            evaluate_ref = ray.put(evaluate)  # the evaluation goes through the object store once
        except Exception as exc:
            raise TypeError(f"the evaluation function cannot be sent to the evaluators (it must be picklable): {exc}") from exc
        self._loaded = (ray.put(space), evaluate_ref)
        for slot in self._booting:
            self._load(slot)
        self._booting.clear()

    def _load(self, slot: _Slot) -> None:
        self.starting[slot.actor.load.remote(*self._loaded).future()] = slot

    @property
    def coming(self) -> int:
        """Evaluators started and not up yet."""
        return len(self.starting) + len(self._booting)

    def _start(self, share: tuple[float, float]) -> None:
        """Start one evaluator with `share` (num_cpus, num_gpus)."""
        name = f"{self._prefix}-evaluator-{self._started}"
        self._started += 1
        num_cpus, num_gpus = share
        self._start_times[name] = time.monotonic()
        actor = RemoteEvaluator.options(
            name=name, num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0, scheduling_strategy="SPREAD"
        ).remote(name, self._warm)
        slot = _Slot(name, actor, share)
        if self._loaded is None:
            self._booting.append(slot)
        else:
            self._load(slot)

    def launch(self) -> None:
        """Start as many waiting evaluators as may start at once."""
        while self._waiting and self.coming < self._max_starting:
            self._start(self._waiting.popleft())

    def _asyncio(self, future: concurrent.futures.Future) -> asyncio.Future:
        """The asyncio future of a Ray future, made once, in the running event loop."""
        if future not in self._awaitable:
            self._awaitable[future] = asyncio.wrap_future(future)
        return self._awaitable[future]

    async def start(self, timeout: float) -> None:
        """Start the evaluators (see `launch`) and wait until at least one is up, or raise naming the resources asked
        for. While the driver's process is lent (`lend_here`), it returns at once: `wait` raises that error if no
        evaluator is up `timeout` seconds from now."""
        if self._loaded is None:
            raise RuntimeError("load(space, evaluate) before start()")
        self.launch()
        self._start_deadline = time.monotonic() + timeout
        self._start_timeout = timeout
        while not self.idle and self._here is None:
            waiting = {self._asyncio(f): f for f in self.starting}
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise self._start_error()
            self._take_started([waiting[d] for d in done])

    def _start_error(self) -> EvaluatorStartError:
        return EvaluatorStartError(
            f"no evaluator started within {self._start_timeout:.0f} s ({len(self._shares)} asked for, (num_cpus, num_gpus) "
            f"{sorted(set(self._shares))}; the cluster has {ray.cluster_resources()}): "
            "ask for fewer workers or smaller shares, or add nodes"
        )

    def _take_started(self, done) -> None:
        """Make the evaluators that came up idle; one that died starting, not by its own error, is started again."""
        for future in done:
            slot = self.starting.pop(future)
            self._awaitable.pop(future, None)
            try:
                slot.node = future.result()
            except RayActorError as exc:
                if exc.actor_init_failed:
                    raise _start_error(slot.name, exc) from exc
                if self._start_deaths >= max(3, 2 * len(self._shares)):
                    raise EvaluatorStartError(
                        f"evaluators keep dying while they start ({self._start_deaths + 1} in a row, last {slot.name}: {exc}); "
                        "check the nodes' memory and health"
                    ) from exc
                self._start_deaths += 1
                self._replace(slot)
                continue
            except RayTaskError as exc:
                raise _start_error(slot.name, exc) from exc
            self._start_deaths = 0
            self.startup[slot.name] = time.monotonic() - self._start_times[slot.name]
            self.idle.append(slot)
        self._stop_lending()
        self.launch()  # the next ones, in the room those left

    def submit(self, precisions: tuple[str, ...], payload: Any, task_name: str, here: bool = False, goal: Goal | None = None) -> str:
        """Start evaluating on an idle evaluator (`here`: in the driver's process, while `here_idle`), told `goal`
        (see `running`); returns the evaluator's name."""
        if here:
            future = asyncio.get_running_loop().run_in_executor(self._here_thread, self._evaluate_here, precisions, goal)
            self.in_flight[future] = (self._here_slot, payload)
            return self._here_slot.name
        slot = self.idle.popleft()
        ref = slot.actor.evaluate.options(name=task_name).remote(precisions, goal)
        future = asyncio.wrap_future(ref.future())
        self.in_flight[future] = (slot, payload)
        self._refs[future] = ref
        return slot.name

    def _future_of(self, payload: Any) -> asyncio.Future:
        return next(f for f, (_, p) in self.in_flight.items() if p is payload)

    def cancel(self, payload: Any) -> bool:
        """Cancel the evaluation of `payload` on its evaluator (`ray.cancel`: the evaluator sees it where it looks, see
        `actors.evaluator`, and lives on); it comes back from `wait` as `Cancelled`, or with its record if it ended
        first. False for an evaluation in the driver's process."""
        future = self._future_of(payload)
        if future not in self._refs:
            return False
        ray.cancel(self._refs[future])
        return True

    async def wait(self, timeout: float | None) -> list[tuple[Any, EvaluationRecord | Lost | Failed]]:
        """The evaluations that finished, with their records; empty if only an evaluator came up or `timeout` passed.

        A dead evaluator is replaced by a new one and its task comes back as `Lost`.
        """
        if not self.in_flight and not self.starting:
            self.launch()
            if not self.starting:
                return []
        starting = {self._asyncio(f): f for f in self.starting}
        none_up = self._start_deadline is not None and not self.startup
        if none_up:  # the driver's process evaluates meanwhile; an evaluator must still come up in time
            left = max(0.0, self._start_deadline - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        done, _ = await asyncio.wait([*self.in_flight, *starting], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        self._take_started([starting[f] for f in done if f in starting])
        if none_up and not self.startup and time.monotonic() >= self._start_deadline:
            raise self._start_error()
        finished = []
        for future in done:
            if future not in self.in_flight:
                continue
            slot, payload = self.in_flight.pop(future)
            self._refs.pop(future, None)
            if slot is self._here_slot:
                try:
                    finished.append((payload, future.result()))
                except Exception as exc:  # what escapes evaluate_config: the driver decides what it means
                    finished.append((payload, Failed(exc, exc)))
                self._stop_lending()
                continue
            try:
                record: EvaluationRecord | Lost = future.result()
            except TaskCancelledError:
                self.idle.append(slot)
                finished.append((payload, Cancelled(slot.name, slot.node)))
                continue
            except LOST_ERRORS as exc:
                finished.append((payload, Lost(slot.name, f"evaluator {slot.name} died: {type(exc).__name__}: {exc}", slot.node)))
                self._replace(slot)
                continue
            except RayTaskError as exc:
                self.idle.append(slot)  # the evaluator lives on; the driver decides what the failure means
                finished.append((payload, Failed(exc.cause, exc)))
                continue
            self.idle.append(slot)
            finished.append((payload, record))
        return finished

    def kill(self, payload: Any) -> tuple[str, str]:
        """Kill the evaluator running the evaluation of `payload` (past its deadline) and start another with its share;
        returns the killed evaluator's name and node. That evaluation never comes back from `wait`."""
        future = self._future_of(payload)
        slot, _ = self.in_flight.pop(future)
        self._refs.pop(future, None)
        future.cancel()
        self._replace(slot)
        return slot.name, slot.node

    def _replace(self, slot: _Slot) -> None:
        """Kill `slot`'s evaluator (dead already, or to be stopped) and start a new one with the same share, first."""
        ray.kill(slot.actor, no_restart=True)
        self._waiting.appendleft(slot.share)
        self.launch()

    def shutdown(self) -> list[Any]:
        """Kill every evaluator (an evaluation in the driver's process ends first); returns the payloads that were still
        in flight."""
        pending = [payload for _, payload in self.in_flight.values()]
        if self._here_thread is not None:
            self._end_lending()
        for future in [*self.in_flight, *self.starting]:
            future.cancel()
        for slot in [*(s for s, _ in self.in_flight.values()), *self.starting.values(), *self._booting, *self.idle]:
            if slot.actor is not None:
                ray.kill(slot.actor, no_restart=True)
        self.in_flight.clear()
        self._refs.clear()
        self.starting.clear()
        self._booting.clear()
        self.idle.clear()
        self._waiting.clear()
        self._awaitable.clear()
        return pending


def _start_error(name: str, exc: Exception) -> EvaluatorStartError:
    """The evaluator's constructor failed: most often the evaluation (the model, eval_fn, calibration data) does not
    unpickle in the evaluator's process, because a module it needs is not importable there."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    cause = lines[-1] if lines else type(exc).__name__
    return EvaluatorStartError(
        f"evaluator {name} failed to start: {cause}. If a module is missing there, make the code that defines the model "
        "and eval function importable on every node (install it, or pass runtime_env={'working_dir': ...} or "
        "'py_modules' to ray.init)"
    )
