"""Where chunks run: local worker processes or a Dask cluster; the client loop, signals, faults.

The client (this process) hands out chunk tasks (`chunks.run_task`: one seed's chunk, or with
`speed.vectorize` one chunk of a group of seeds trained together), takes their results as
they complete, has the caller write every file, and hands out each seed's next chunk. Workers
write nothing. Workers stream their events as they happen (Dask through a distributed.Queue,
and with each chunk's result too). Ctrl-C or SIGTERM stops handing out chunks and asks the running ones
to checkpoint at the end of their episode. A worker that dies costs its chunk, which runs again
from the seed's last checkpoint with the same numbers. Dask is imported only for `scheduler`.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import signal
import threading
import time
import traceback
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Iterator

from dqnrun.chunks import ChunkResult, ChunkTask, GroupTask, run_task
from dqnrun.config import Config
from dqnrun.errors import Fault, UserError
from dqnrun.networks import NetworkSpec
from dqnrun.trainer import EpisodeEnd, Event, SeedEnd

DASK_INSTALL = 'pip install "dqnrun[dask]"'
# A worker process costs about 1.5 s of CPU to start (Python, torch, gymnasium). It starts when
# the work waiting for it is estimated (from the episodes' pace so far) at SPAWN_WORTH seconds,
# or, before any episode has ended, once work has waited SPAWN_AFTER seconds.
SPAWN_WORTH = 4.0
SPAWN_AFTER = 3.0
MAX_LOSSES = 3  # a chunk whose worker dies this often is not retried again
CONNECT_TIMEOUT = 10  # seconds to reach a Dask scheduler


class WorkerFault(Fault):
    """A fault outside the user's control (workers dying, the scheduler gone); one line."""


class ChunkFailed(WorkerFault):
    """A chunk raised something other than a UserError: a bug in a custom environment, out of
    memory. `key` is its (first) chain's key, `seeds` the seeds it trained, `remote` the
    traceback in the worker; the caller keeps the traceback and says where."""

    def __init__(self, key: Any, seeds: tuple[int, ...], error: BaseException, remote: str):
        what = (str(error).strip().splitlines() or [""])[0][:200]
        name = type(error).__name__
        seed_text = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in seeds)}"
        super().__init__(f"{seed_text} failed: {name}{': ' + what if what else ''}")
        self.key, self.seeds, self.error, self.remote = key, seeds, error, remote


@dataclass(frozen=True)
class Group:
    """Seeds of one run trained together in one process (`speed.vectorize`): `run` names the
    run (any hashable), `seeds` are the group's seeds in the config's order."""

    run: Any
    seeds: tuple[int, ...]


@dataclass
class Chain:
    """One seed of one run as the client sees it: the next task's inputs and what it delivered."""

    key: Any  # the caller's name for it, e.g. (run, seed)
    config: Config
    spec: NetworkSpec
    seed: int
    device: str
    checkpoint: bytes | None = None
    delivered: int = 0  # episodes whose events were delivered
    ended: bool = False  # its SeedEnd was delivered
    losses: int = 0  # chunks lost with their worker
    group: Group | None = None  # chains of one group run as one task; None: alone

    def task(self) -> ChunkTask:
        return ChunkTask(self.config, self.seed, self.spec, self.device, self.checkpoint)


def units(chains: list[Chain]) -> list[list[Chain]]:
    """The chains as units of work, in order: a chain alone, or the chains of one group."""
    grouped: dict[Any, list[Chain]] = {}
    for i, chain in enumerate(chains):
        grouped.setdefault(i if chain.group is None else chain.group, []).append(chain)
    return list(grouped.values())


def unit_task(unit: list[Chain]) -> ChunkTask | GroupTask:
    first = unit[0]
    if first.group is None:
        return first.task()
    return GroupTask(first.config, first.group.seeds, first.spec, first.device, {c.seed: c.checkpoint for c in unit})


def run_chains(
    chains: list[Chain],
    on_event: Callable[[Chain, Event], None],
    on_chunk: Callable[[Chain, ChunkResult], None],
    jobs: int = 1,
    scheduler: str | None = None,
    in_process: bool = True,
) -> bool:
    """Train every chain to its end on `jobs` local workers or the Dask `scheduler`.

    Locally, one of the `jobs` workers is a thread of this process unless `in_process` is False.
    Events reach `on_event` in order and once each, even when a chunk runs twice; each finished
    chunk reaches `on_chunk` (which writes its files) before the chain's next chunk starts.
    Returns False when Ctrl-C or SIGTERM stopped the run (every running chunk checkpointed).
    """
    if not chains:
        return True
    ready = deque(units(chains))
    pool: LocalPool | DaskPool = DaskPool(scheduler) if scheduler else LocalPool(min(jobs, len(ready)), in_process)
    running: dict[int, list[Chain]] = {}
    tokens = itertools.count()

    paces: dict[int, float] = {}  # chain -> its seconds per episode so far

    def deliver(chain: Chain, event: Event) -> None:
        if isinstance(event, EpisodeEnd):
            if event.episode <= chain.delivered:
                return  # already delivered by an earlier run of this chunk
            chain.delivered = event.episode
            paces[id(chain)] = event.wall_time / event.episode
        elif isinstance(event, SeedEnd):
            if chain.ended:
                return
            chain.ended = True
        on_event(chain, event)

    stopping = False
    # The signal handlers first: a Ctrl-C while the pool starts its workers stops the run.
    with stop_signals() as stop_requested, pool:
        while ready or running:
            if stop_requested.is_set() and not stopping:
                stopping = True
                ready.clear()
                pool.stop()
            if not stopping:
                pool.grow(len(ready), waiting_seconds([c for unit in ready for c in unit], paces))
            while ready and not stopping and pool.free() > 0:
                unit = ready.popleft()
                token = next(tokens)
                running[token] = unit
                pool.submit(token, unit_task(unit))
            for kind, token, payload in pool.poll(0.1):
                unit = running.get(token)
                if unit is None:
                    continue
                by_seed = {c.seed: c for c in unit}
                if kind == "event":
                    deliver(by_seed[payload.seed], payload)
                elif kind == "done":
                    del running[token]
                    going_on = []
                    for chunk in payload:  # one result per seed of the unit
                        chain = by_seed[chunk.seed]
                        for event in chunk.events:
                            deliver(chain, event)
                        on_chunk(chain, chunk)
                        chain.checkpoint = chunk.checkpoint
                        if chunk.status == "checkpoint":
                            going_on.append(chain)
                    if going_on and not stopping:
                        ready.appendleft(going_on)  # depth first: finished seeds appear early
                elif kind == "lost":
                    del running[token]
                    chain = unit[0]
                    chain.losses += 1
                    if chain.losses >= MAX_LOSSES:
                        raise WorkerFault(f"a worker died {chain.losses} times while training seed "
                                          f"{', '.join(str(c.seed) for c in unit)} "
                                          "(out of memory?); finished seeds and checkpoints are kept")
                    if not stopping:
                        ready.appendleft(unit)
                else:  # "error": the chunk raised
                    exc, remote = payload
                    if isinstance(exc, UserError):
                        raise exc
                    raise ChunkFailed(unit[0].key, tuple(c.seed for c in unit), exc, remote)
        if stopping:  # chains stopped between two chunks end like the others
            for chain in chains:
                deliver(chain, SeedEnd(chain.seed, "interrupted", f"stopped after episode {chain.delivered}"))
    return not stopping


def waiting_seconds(ready: Iterable[Chain], paces: dict[int, float]) -> float | None:
    """The training time the waiting chains still need, at the mean pace so far (None: no
    episode has ended yet). Episodes get longer as agents learn: this is a lower bound."""
    if not paces:
        return None
    pace = sum(paces.values()) / len(paces)
    return sum(max(0, c.config.episodes - c.delivered) * pace for c in ready)


# ---------------------------------------------------------------------------------------------
# Signals


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """While inside: Ctrl-C and SIGTERM set the yielded flag; a second Ctrl-C raises
    KeyboardInterrupt. The handler only sets a flag: the loop polls it."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def request_stop(signum: int, frame: Any) -> None:
        flag.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C forces it

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, request_stop)
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def sigint_held() -> Iterator[None]:
    """While inside, this thread blocks SIGINT: processes (and threads) started inside inherit the
    blocked mask, so a terminal's Ctrl-C, sent to the whole process group, cannot kill a worker
    before it ignores SIGINT itself (`ignore_sigint`; the fork server ignores it too). A Ctrl-C
    that comes meanwhile stays pending, not lost: it is delivered to this process's handler (the
    stop flag of `stop_signals`) when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # Starting multiprocessing's resource tracker unblocks SIGINT in the thread that starts it:
    # have it started before the block.
    multiprocessing.resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# ---------------------------------------------------------------------------------------------
# Local workers: the client's own process runs one chunk at a time in a thread, and up to
# `jobs - 1` worker processes run the others. Importing torch and gymnasium costs a process
# about a second and a half of CPU, more than a small run saves, so processes start only when
# the waiting work is worth it (SPAWN_WORTH), and chunks go only to workers that said they are
# ready.
# Each worker talks to the client over its own pipe (no lock shared between workers, so a
# killed one cannot block the others).


def serve(conn: Connection) -> None:
    """A worker's loop: run the chunk tasks that arrive on `conn`, stream events back."""
    conn.send(("ready", None, None))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "quit":
            return
        if message[0] != "task":
            continue  # a stop request that came after its chunk ended
        _, token, task = message
        stopped = False

        def should_stop() -> bool:
            nonlocal stopped
            while not stopped and conn.poll():
                stopped = conn.recv()[0] in ("stop", "quit")
            return stopped

        try:
            results = run_task(task, emit=lambda event: conn.send(("event", token, event)), should_stop=should_stop)
            for result in results:
                result.events = []  # already streamed, in order, on this pipe
            conn.send(("done", token, results))
        except BaseException as exc:  # noqa: BLE001 - the client decides what it means
            remote = traceback.format_exc()
            try:
                conn.send(("error", token, (exc, remote)))
            except Exception:  # the exception does not pickle
                conn.send(("error", token, (RuntimeError(f"{type(exc).__name__}: {exc}"), remote)))


def ignore_sigint() -> None:
    """In a worker process started inside `sigint_held`: from now on ignore Ctrl-C (the client
    decides when to stop). Ignore first, then unblock: a Ctrl-C held back while the process
    started is discarded, not delivered."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def process_main(conn: Connection) -> None:
    """Entry point of a worker process."""
    ignore_sigint()
    import torch

    torch.set_num_threads(1)
    try:
        serve(conn)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client is gone or gave up on this worker before it started


def process_context() -> Any:
    """Where available, a fork server that has imported torch and dqnrun once forks the workers
    (a few milliseconds each, also when one is replaced); elsewhere each worker is spawned."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["dqnrun.chunks"])
    return ctx


class Slot:
    """One worker (a thread of this process, or a process) and its pipe."""

    def __init__(self, in_process: bool):
        self.in_process = in_process
        self.token: int | None = None  # the chunk it runs
        self.ready = False
        if in_process:
            self.conn, theirs = multiprocessing.Pipe()
            self.worker: Any = threading.Thread(target=serve, args=(theirs,), name="dqnrun-chunks", daemon=True)
            self.worker.start()
        else:
            ctx = process_context()
            self.conn, theirs = ctx.Pipe()
            self.worker = ctx.Process(target=process_main, args=(theirs,), name="dqnrun-worker", daemon=True)

            def launch() -> None:
                try:
                    self.worker.start()
                finally:
                    theirs.close()

            if ctx.get_start_method() == "forkserver":
                # The first start waits for the fork server to import torch (a second or two):
                # in a thread, so that this process's own worker and the event loop go on.
                with sigint_held():  # the server, and so every worker, starts with Ctrl-C blocked
                    multiprocessing.forkserver.ensure_running()
                threading.Thread(target=launch, name="dqnrun-launch", daemon=True).start()
            else:
                with sigint_held():
                    launch()

    def close(self) -> None:
        try:
            self.conn.send(("quit", None, None))
        except OSError:
            pass
        if not self.in_process and self.worker.pid is not None:
            # A process holds nothing worth keeping (a running chunk is given up): no need to
            # wait for its interpreter to shut down. One not started yet finds its pipe closed.
            self.worker.kill()
            self.worker.join(timeout=5)
        self.conn.close()


class LocalPool:
    def __init__(self, jobs: int, in_process: bool = True):
        self.jobs = jobs
        self.in_process = in_process
        self.slots: list[Slot] = []
        self.stopping = False

    def __enter__(self) -> "LocalPool":
        self.slots = [Slot(in_process=self.in_process)]
        self.started = time.monotonic()
        return self

    def grow(self, waiting: int, seconds: float | None) -> None:
        """Start worker processes for waiting chains when the work pays for them (SPAWN_WORTH)."""
        if not waiting or len(self.slots) >= self.jobs:
            return
        if seconds is None:
            worth = time.monotonic() - self.started >= SPAWN_AFTER
        else:
            worth = seconds >= SPAWN_WORTH
        if worth:
            for _ in range(min(waiting, self.jobs - len(self.slots))):
                self.slots.append(Slot(in_process=False))

    def __exit__(self, *exc: Any) -> None:
        for slot in self.slots:
            slot.close()

    def free(self) -> int:
        return sum(1 for s in self.slots if s.ready and s.token is None)

    def submit(self, token: int, task: ChunkTask | GroupTask) -> None:
        slot = next(s for s in self.slots if s.ready and s.token is None)
        slot.token = token
        slot.conn.send(("task", token, task))

    def stop(self) -> None:
        self.stopping = True
        for slot in self.slots:
            if slot.token is not None:
                try:
                    slot.conn.send(("stop", None, None))
                except OSError:
                    pass

    def poll(self, timeout: float) -> list[tuple[str, Any, Any]]:
        messages: list[tuple[str, Any, Any]] = []
        by_conn = {s.conn: s for s in self.slots}
        for conn in wait(list(by_conn), timeout):
            slot = by_conn[conn]
            try:
                while conn.poll():
                    kind, token, payload = conn.recv()
                    if kind == "ready":
                        slot.ready = True
                        continue
                    if kind in ("done", "error"):
                        slot.token = None
                    messages.append((kind, token, payload))
            except (EOFError, OSError):  # the worker died
                if slot.token is not None:
                    messages.append(("lost", slot.token, None))
                self.replace(slot)
        return messages

    def replace(self, dead: Slot) -> None:
        dead.token = None
        dead.ready = True  # nothing to wait for in close()
        dead.close()
        i = self.slots.index(dead)
        if self.stopping:
            del self.slots[i]
        else:
            self.slots[i] = Slot(in_process=dead.in_process)


# ---------------------------------------------------------------------------------------------
# Dask: the same chunk tasks as Dask tasks. The scheduler reruns a task whose worker died; the
# stop flag is a distributed.Event that chunks look at between episodes; events stream through
# a distributed.Queue and come back with each chunk's result as well.


def dask_chunk(task: ChunkTask | GroupTask, token: int, names: tuple[str, str]) -> list[ChunkResult]:
    """A chunk on a Dask worker. Its events go to the client live through a distributed.Queue
    (best effort: they also come back with the result, which is what counts)."""
    from distributed import Event as DaskEvent
    from distributed import Queue as DaskQueue

    stop_name, events_name = names
    flag, events = DaskEvent(stop_name), DaskQueue(events_name)
    asked = [0.0, False]
    live = [True]

    def should_stop() -> bool:
        now = time.monotonic()
        if not asked[1] and now - asked[0] > 0.25:  # one scheduler round trip per 0.25 s at most
            asked[0], asked[1] = now, flag.is_set()
        return asked[1]

    def emit(event: Event) -> None:
        if live[0]:
            try:
                events.put((token, event), timeout=5)
            except Exception:  # noqa: BLE001 - the display can wait for the chunk's end
                live[0] = False

    return run_task(task, emit=emit, should_stop=should_stop)


def import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UserError(f"--scheduler needs Dask, which is not installed: {DASK_INSTALL}") from None
    return distributed


def check_scheduler(scheduler: str, jobs: int | None) -> None:
    """Fail early on a --scheduler that cannot work (bad local:N, Dask not installed)."""
    if jobs is not None:
        raise UserError("--jobs is for local processes; with --scheduler the cluster's workers decide")
    import_distributed()
    if parse_local(scheduler) is None:
        probe(scheduler)


def probe(address: str) -> None:
    """Fail in one line, before anything is written, when no Dask scheduler answers at `address`."""
    with connect(address) as client:
        client.close()


def connect(address: str) -> Any:
    """A distributed.Client of the scheduler at `address`; a UserError (one line) if none answers."""
    d = import_distributed()
    try:
        return d.Client(address, timeout=f"{CONNECT_TIMEOUT}s")
    except (OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    except (ValueError, TypeError):
        raise UserError(f"--scheduler {address!r}: not an address; expected tcp://HOST:PORT or local:N") from None
    except Exception:  # noqa: BLE001 - something answered, but not a Dask scheduler
        reason = "what answers there is not a Dask scheduler"
    raise UserError(f"cannot reach a Dask scheduler at {address} ({reason}); is `dask scheduler` running there?")


def parse_local(address: str) -> int | None:
    """N for `local:N`, None for a scheduler address."""
    if not address.startswith("local:"):
        return None
    n = address.removeprefix("local:")
    if not n.isdigit() or int(n) < 1:
        raise UserError(f"--scheduler {address!r}: expected local:N with N >= 1 workers, e.g. local:4")
    return int(n)


class DaskPool:
    def __init__(self, address: str):
        self.address = address
        self.n_local = parse_local(address)
        self.distributed = import_distributed()
        self.cluster: Any = None
        self.client: Any = None
        self.futures: dict[int, Any] = {}
        self.threads = 1
        self.checked = 0.0

    def __enter__(self) -> "DaskPool":
        d = self.distributed
        if self.n_local is not None:
            import logging

            with sigint_held():  # worker processes inherit it: Ctrl-C stops chunks, not workers
                self.cluster = d.LocalCluster(n_workers=self.n_local, threads_per_worker=1, processes=True,
                                              dashboard_address=":0", silence_logs=logging.ERROR)
            self.client = d.Client(self.cluster)
            # Its workers then ignore Ctrl-C, like local worker processes. (One that Dask restarts
            # later keeps SIGINT blocked, as it inherits the mask: Ctrl-C cannot reach it either.)
            self.client.run(ignore_sigint)
        else:
            self.client = connect(self.address)
        run_id = uuid.uuid4().hex
        self.names = (f"dqnrun-stop-{run_id}", f"dqnrun-events-{run_id}")
        self.flag = d.Event(self.names[0], client=self.client)
        self.events = d.Queue(self.names[1], client=self.client)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            for future in self.futures.values():
                future.cancel()
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()

    def grow(self, waiting: int, seconds: float | None) -> None:
        pass  # the cluster's size is the cluster's business

    def free(self) -> int:
        now = time.monotonic()
        if now - self.checked > 1.0:  # workers come and go
            self.checked = now
            self.threads = max(1, sum(self.client.nthreads().values()))
        return self.threads - len(self.futures)

    def submit(self, token: int, task: ChunkTask | GroupTask) -> None:
        self.futures[token] = self.client.submit(dask_chunk, task, token, self.names, pure=False,
                                                 key=f"dqnrun-chunk-{task.label}-{uuid.uuid4().hex}")

    def stop(self) -> None:
        self.flag.set()

    def poll(self, timeout: float) -> list[tuple[str, Any, Any]]:
        messages: list[tuple[str, Any, Any]] = []
        try:
            for token, event in self.events.get(batch=True):
                messages.append(("event", token, event))
        except Exception:  # noqa: BLE001 - live events are a nicety; results carry them too
            pass
        done = [t for t, f in self.futures.items() if f.done()]
        if not done:
            if not messages:
                time.sleep(timeout)
            return messages
        for token in done:
            future = self.futures.pop(token)
            if future.status == "finished":
                messages.append(("done", token, future.result()))
                continue
            if future.status == "cancelled":
                raise WorkerFault("the Dask scheduler dropped a chunk (did the scheduler stop?); "
                                  "finished seeds and checkpoints are kept")
            exc = future.exception()
            if type(exc).__name__ == "KilledWorker":
                raise WorkerFault(f"Dask workers died running a chunk of seed {future.key}: {exc}; "
                                  "finished seeds and checkpoints are kept")
            messages.append(("error", token, (exc, "".join(traceback.format_exception(type(exc), exc, future.traceback())))))
        return messages
