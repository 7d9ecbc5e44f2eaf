"""How long runs take: the one speed model behind the launch preview, queue ETAs and run progress.

Why one module: a student sees three estimates of the same thing (the preview before "Queue runs", the ETA
of a queued run, the "about 3 min left" of a running one). Built from three models in two units they
disagreed; here every estimate is ``setup + seconds per crystal-epoch × crystals × epochs``, where the
crystals of a run are its training and validation crystals (both are passed each epoch), learned from the
epochs this server recorded.

Everything here is pure: the store reads the rows (:meth:`cgcnn.runs.store.RunStore.speed`,
:meth:`~cgcnn.runs.store.RunStore.queue_eta`) and passes them in, so the arithmetic is tested without SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: Seconds per crystal and epoch (train + validation) when the store has recorded no epoch to learn from yet:
#: the study's default fine-tune (1000 + 1000 crystals, 30 epochs) measured at about 35 s on 2 cores.
FALLBACK_SECONDS_PER_CRYSTAL_EPOCH = 35.0 / (2000 * 30)

#: Epochs of runs with fewer crystals than this do not set the speed: their fixed costs per epoch (a test
#: pass, a checkpoint) dominate, and a 40-crystal demo would make the study's default look 20x slower.
MIN_CRYSTALS_FOR_SPEED = 300

#: How many recent epochs (and run set-ups) the speed is learned from.
RECENT_EPOCHS = 200
RECENT_SETUPS = 20


def epochs_of(hyperparams: dict | None) -> int:
    """The epochs a stored run asked for (its spec's ``hyperparams``; 0 when it does not say).

    Specs write their epochs out (:meth:`cgcnn.training.finetune.FinetuneSpec.to_dict`), since what the
    training default is belongs to the training layer, not to the store; a hand-made spec without them is
    estimated by its set-up only.
    """
    try:
        return max(0, int((hyperparams or {}).get("epochs") or 0))
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class Speed:
    """This server's training speed.

    Attributes:
        seconds_per_crystal_epoch: seconds for one crystal (train or validation) in one epoch.
        setup_seconds: mean time a worker takes from claiming a run to its first epoch (loading, graphs).
        measured: whether learned from recorded epochs (False: the fallback constant).
    """

    seconds_per_crystal_epoch: float
    setup_seconds: float = 0.0
    measured: bool = False

    def run_seconds(self, crystals: int, epochs: int, done_epochs: int = 0) -> float:
        """Seconds a run of ``crystals`` (train + validation) and ``epochs`` still needs after ``done_epochs``.

        The set-up counts only for a run that has not recorded an epoch yet.
        """
        left = max(0, int(epochs) - int(done_epochs))
        setup = self.setup_seconds if done_epochs == 0 else 0.0
        return self.seconds_per_crystal_epoch * max(1, int(crystals)) * left + setup


#: Which quantile of recent per-crystal epoch rates is taken as the speed (0.25: the lower quartile).
SPEED_QUANTILE = 0.25


def speed_from(epochs: Iterable[tuple[float, int]], setups: Iterable[float] = ()) -> Speed:
    """The speed from recent epochs ``(seconds, crystals of its run)`` and recent set-up times.

    Load only ever slows an epoch down (a class's page runs, a benchmark, another program), so the recent epochs'
    rates are this machine's speed times a load factor of at least 1. The median learned that factor: after a
    busy stretch every preview read several times too long ("about 2 min" for a 150-crystal run). The lower
    quartile (:data:`SPEED_QUANTILE`) estimates the unloaded speed while one freak fast epoch still cannot set it.
    Only epochs of runs of real size count (:data:`MIN_CRYSTALS_FOR_SPEED`); the measured fallback when there is
    none.
    """
    rates = sorted(float(s) / int(n) for s, n in epochs if s is not None and n and int(n) >= MIN_CRYSTALS_FOR_SPEED)
    setup_list = [float(s) for s in setups if s is not None]
    setup = sum(setup_list) / len(setup_list) if setup_list else 0.0
    if not rates:
        return Speed(FALLBACK_SECONDS_PER_CRYSTAL_EPOCH, setup, measured=False)
    return Speed(float(np.quantile(rates, SPEED_QUANTILE)), setup, measured=True)


def remaining_seconds(
    crystals: int, epochs: int, epoch_seconds: Sequence[float] = (), speed: Speed | None = None
) -> float:
    """Seconds a started run still needs: its own mean epoch time once it has one, else the server's speed.

    Args:
        crystals: the run's training + validation crystals.
        epochs: the epochs it asked for.
        epoch_seconds: the seconds of its recorded epochs.
        speed: the server's speed (default: the fallback), used before the run's first epoch.
    """
    done = [float(s) for s in epoch_seconds if s is not None]
    if done:
        return max(0, int(epochs) - len(epoch_seconds)) * (sum(done) / len(done))
    return (speed or Speed(FALLBACK_SECONDS_PER_CRYSTAL_EPOCH)).run_seconds(crystals, epochs)


@dataclass(frozen=True)
class QueuedWork:
    """A computation the queue simulation places: its id, owner and remaining seconds (from its own start)."""

    run_id: str
    owner: str
    seconds: float


def simulate_queue(
    target_id: str,
    running: Sequence[QueuedWork],
    queued: Sequence[QueuedWork],
    last_served: dict[str, float],
    now: float,
    workers: int | None = None,
) -> tuple[float | None, int]:
    """Seconds until ``target_id`` finishes, and how many queued computations start before it.

    Replays the fair queue (:data:`cgcnn.runs.sharing.NEXT_QUEUED_SQL`: the owner with the fewest runs in
    progress, then the one served least recently, then the oldest run) on ``workers`` workers (default: as
    many as run now, at least one).

    Args:
        target_id: the computation asked about.
        running: computations running now, with the seconds each still needs.
        queued: queued computations in creation order, with the seconds each needs.
        last_served: owner -> when a run of theirs last started (unix seconds).
        now: the current time.
        workers: workers draining the queue.

    Returns:
        ``(seconds, runs_ahead)``; seconds is None when the target is in neither list (claimed just now).
    """
    served = dict(last_served)
    slots: list[tuple[float, str]] = []
    for work in running:
        end = now + work.seconds
        if work.run_id == target_id:
            return end - now, 0
        slots.append((end, work.owner))
    n_workers = max(1, workers or 0, len(slots))
    slots.sort()
    while len(slots) < n_workers:
        slots.insert(0, (now, ""))
    pending = list(queued)
    ahead = 0
    while pending:
        slots.sort()
        free_at, _ = slots.pop(0)
        in_progress: dict[str, int] = {}
        for end, owner in slots:
            if end > free_at and owner:
                in_progress[owner] = in_progress.get(owner, 0) + 1
        order = sorted(
            range(len(pending)),
            key=lambda i: (in_progress.get(pending[i].owner, 0), served.get(pending[i].owner, 0.0), i),
        )
        work = pending.pop(order[0])
        served[work.owner] = free_at
        end = free_at + work.seconds
        if work.run_id == target_id:
            return end - now, ahead
        ahead += 1
        slots.append((end, work.owner))
    return None, ahead


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``30 min``, ``1 h 30 min``: the one way a duration (estimate or measured) is written."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        minutes, rest = int(seconds // 60), int(seconds % 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
