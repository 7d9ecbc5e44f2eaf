"""A learning-curve grid's worth of finished runs written straight into a store (no training), for page tests.

Scratch and a formation-energy k=1 fine-tune at several training-set sizes on several split seeds; the test MAE
falls with size as a power law, and the fine-tune is better below about 300 crystals and worse above, so the
curves cross where a student can see it.
"""

from __future__ import annotations

import math

from cgcnn.runs.store import RunStore
from cgcnn.training.finetune import FinetuneSpec

FINE_TUNE = "formation-energy-per-atom"


def curve_mae(pretrained: str, n_train: int, split_seed: int) -> float:
    """The made-up test MAE of a run: ``2.5 n^-1/4`` + 0.02 per split seed, ± 0.08 log10(n / 300) fine-tuned."""
    transfer = 0.0 if pretrained == "none" else 0.08 * math.log10(n_train / 300)
    return 2.5 * n_train**-0.25 + 0.02 * split_seed + transfer


def add_curve_runs(
    store: RunStore, sizes: tuple[int, ...] = (50, 200, 1000), splits: tuple[int, ...] = (0, 1, 2), owner: str = "lc"
) -> list[str]:
    """Finished runs of scratch and the k=1 fine-tune (validation and test 100, 3 epochs); returns their ids."""
    ids = []
    for split in splits:
        for n in sizes:
            for pretrained, freeze in (("none", 0), (FINE_TUNE, 1)):
                spec = FinetuneSpec(pretrained, freeze, n_train=n, n_val=100, n_test=100, split_seed=split,
                                    hyperparams={"epochs": 3, "threads": 1})  # fmt: skip
                run_id = store.create_run(spec.to_dict(), owner=owner)
                store.finish(run_id, "done", test_mae=curve_mae(pretrained, n, split), seconds=1.0)
                ids.append(run_id)
    return ids
