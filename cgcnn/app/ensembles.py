"""Seed ensembles of finished runs for the Predict page: which runs can be averaged, and under what name.

The CLI's ``predict --model run:A,run:B,...`` takes any list; a page needs choices a student can read. Runs of
one recipe (pretrained model, freeze depth, target, split sizes and seed, epochs, data) that differ only in
their seed are such a choice: the spread of their predictions says how much the seed alone moves the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from cgcnn.app.tables import model_label, protocol_of
from cgcnn.errors import CGCNNError
from cgcnn.nn.predictor import Ensemble, Predictor
from cgcnn.runs.store import RunRecord


@dataclass(frozen=True)
class SeedEnsemble:
    """Finished runs of one recipe, to predict together.

    Attributes:
        label: what the choice shows (recipe and number of seeds).
        run_ids: the member runs, oldest first.
    """

    label: str
    run_ids: tuple[str, ...]

    @property
    def model_spec(self) -> str:
        """The same ensemble as the CLI's ``--model`` value: ``run:A,run:B,...``."""
        return ",".join(f"run:{i}" for i in self.run_ids)


def usable(record: RunRecord) -> bool:
    """A run that can be a member: done, with a saved model."""
    return record.status == "done" and bool(record.checkpoint_path)


def recipe_of(record: RunRecord) -> tuple:
    """What members of one seed ensemble share: model, freeze depth, strategy and the protocol (all but the seed)."""
    return (model_label(record), record.freeze, _strategy(record), *protocol_of(record))


def _strategy(record: RunRecord) -> str:
    return record.spec.get("strategy") or "freeze"  # runs recorded before strategies froze


def seed_ensembles(records: list[RunRecord], min_members: int = 2) -> list[SeedEnsemble]:
    """Every recipe with at least ``min_members`` finished runs, newest recipe first.

    Two runs of one recipe and seed (a rerun) both count: their spread is then the machine's, which is what a
    student would see too.
    """
    groups: dict[tuple, list[RunRecord]] = {}
    for record in sorted((r for r in records if usable(r)), key=lambda r: r.created_at):
        groups.setdefault(recipe_of(record), []).append(record)
    chosen = [members for members in groups.values() if len(members) >= min_members]
    chosen.sort(key=lambda members: max(r.created_at for r in members), reverse=True)
    return [SeedEnsemble(ensemble_label(members), tuple(r.id for r in members)) for members in chosen]


def ensemble_label(members: list[RunRecord]) -> str:
    """``formation-energy-per-atom k2 · band_gap 40/20/20 · 2 ep · 3 runs (seeds 0, 1, 2)``."""
    first = members[0]
    sizes = "/".join(str(n) for n in (first.n_train, first.n_val, first.n_test))
    epochs = (first.spec.get("hyperparams") or {}).get("epochs", "?")
    seeds = ", ".join(str(r.seed) for r in members)
    data = "" if not first.spec.get("data") else " · own data"
    strategy = "" if _strategy(first) == "freeze" else f" {_strategy(first)}"
    return f"{model_label(first)} k{first.freeze}{strategy} · {first.target} {sizes} · {epochs} ep{data} · " + (
        f"{len(members)} runs (seeds {seeds})"
    )


def ensemble_name(n_members: int) -> str:
    """The column name of an ensemble's predictions on the Predict page."""
    return f"ensemble of {n_members}"


def build_ensemble(members: list[Predictor]) -> Ensemble:
    """An :class:`~cgcnn.nn.predictor.Ensemble` of loaded runs (the same class ``predict --model A,B`` uses).

    Raises:
        CGCNNError: fewer than two members, or members that predict different targets or build graphs
            differently.
    """
    if len(members) < 2:
        raise CGCNNError("choose at least two finished runs for an ensemble")
    return Ensemble(list(members))
