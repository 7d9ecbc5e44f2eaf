"""The results of runs: each run's epochs (learning curves) and its test predictions.

Entries that reuse another run's computation (:mod:`cgcnn.runs.sharing`) hold none of their own: reads go to
the computation behind them (:meth:`RunResults._source_ids`), so a reused entry shows the same curves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cgcnn.runs.database import RunStoreError, StoreFile
from cgcnn.runs.schema import EPOCH_COLUMNS, PREDICTION_COLUMNS

if TYPE_CHECKING:
    import pandas as pd


class RunNotFound(RunStoreError):
    """No run with this id (deleted, or a typo)."""


class RunResults(StoreFile):
    """Epochs and predictions of runs, on top of the store file (:class:`cgcnn.runs.store.RunStore` adds runs)."""

    def _source_ids(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Entry id -> id of the run that computed it (itself when not reused)."""
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return {}
        rows = self._read(
            f"SELECT id, COALESCE(source_run_id, id) FROM runs WHERE id IN ({', '.join('?' * len(ids))})", ids
        )
        found = {str(r[0]): str(r[1]) for r in rows}
        return {i: found.get(i, i) for i in ids}

    # ----------------------------------------------------------------------------------------- epochs

    def add_epoch(
        self,
        run_id: str,
        epoch: int,
        train_loss: float | None,
        train_mae: float | None,
        val_loss: float | None,
        val_mae: float | None,
        seconds: float | None,
        lr: float | None = None,
    ) -> None:
        """Record one finished epoch (idempotent: writing the same epoch again replaces it)."""
        row = (run_id, int(epoch), *(None if v is None else float(v) for v in (train_loss, train_mae)))
        row += tuple(None if v is None else float(v) for v in (val_loss, val_mae, seconds, lr))
        try:
            self._write(
                lambda conn: conn.execute(
                    "INSERT OR REPLACE INTO epochs (run_id, epoch, train_loss, train_mae, val_loss, val_mae, "
                    "seconds, lr) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            )
        except sqlite3.IntegrityError as exc:  # foreign key: the run does not exist
            raise RunNotFound(f"no run with id {run_id!r} in {self.path}") from exc

    def epochs(self, run_id: str) -> pd.DataFrame:
        """The run's epochs in order, one row each: epoch, train_loss, train_mae, val_loss, val_mae, seconds, lr."""
        source = self._source_ids([run_id])[run_id]
        return self._frame(
            f"SELECT {', '.join(EPOCH_COLUMNS)} FROM epochs WHERE run_id = ? ORDER BY epoch", [source], EPOCH_COLUMNS
        )

    def epochs_many(self, run_ids: Iterable[str]) -> pd.DataFrame:
        """The epochs of several runs in one frame, with a leading ``run_id`` column (for overlaid curves)."""
        ids = list(dict.fromkeys(run_ids))
        columns = ("run_id", *EPOCH_COLUMNS)
        if not ids:
            return self._frame("", [], columns)
        sources = self._source_ids(ids)
        if all(sources[i] == i for i in ids):
            sql = (
                f"SELECT {', '.join(columns)} FROM epochs WHERE run_id IN ({', '.join('?' * len(ids))}) "
                "ORDER BY run_id, epoch"
            )
            return self._frame(sql, ids, columns)
        # entries reusing a computation get its epochs under their own id
        pairs = " UNION ALL ".join("SELECT ? AS entry, ? AS source" for _ in ids)
        sql = (
            f"SELECT m.entry, {', '.join('e.' + c for c in EPOCH_COLUMNS)} FROM ({pairs}) m "
            "JOIN epochs e ON e.run_id = m.source ORDER BY m.entry, e.epoch"
        )
        return self._frame(sql, [v for i in ids for v in (i, sources[i])], columns)

    # ----------------------------------------------------------------------------------------- predictions

    def add_predictions(self, run_id: str, rows: Iterable[tuple[str, str, float | None, float | None]]) -> int:
        """Store predictions ``(crystal_id, split, y_true, y_pred)`` in one transaction; returns how many.

        Writing the same (split, crystal_id) again replaces it, so a retried write does not duplicate rows.
        """
        data = [
            (run_id, str(cid), str(split), None if yt is None else float(yt), None if yp is None else float(yp))
            for cid, split, yt, yp in rows
        ]
        try:
            self._write(
                lambda conn: conn.executemany(
                    "INSERT OR REPLACE INTO predictions (run_id, crystal_id, split, y_true, y_pred) "
                    "VALUES (?, ?, ?, ?, ?)",
                    data,
                )
            )
        except sqlite3.IntegrityError as exc:
            raise RunNotFound(f"no run with id {run_id!r} in {self.path}") from exc
        return len(data)

    def predictions(self, run_id: str, split: str | None = None) -> pd.DataFrame:
        """The run's predictions (crystal_id, split, y_true, y_pred) in the order they were written."""
        sql = f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM predictions WHERE run_id = ?"
        params: list[Any] = [self._source_ids([run_id])[run_id]]
        if split is not None:
            sql += " AND split = ?"
            params.append(split)
        return self._frame(sql + " ORDER BY rowid", params, PREDICTION_COLUMNS)
