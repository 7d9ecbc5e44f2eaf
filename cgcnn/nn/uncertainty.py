"""A model's calibration file: its conformal scores and applicability domain, tied to its checkpoint's bytes.

``NAME.calibration.npz`` lies beside the checkpoint ``NAME.pt`` (an ensemble's beside its manifest). It holds
the sha256 of every checkpoint it was measured with: a calibration read with another checkpoint (retrained,
edited, replaced) is refused with one line naming the model, and the intervals and distances stay empty rather
than wrong. NumPy's ``.npz`` without pickles (``allow_pickle=False``): data, never code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgcnn.nn.conformal import Calibration
from cgcnn.nn.domain import Domain

FORMAT_NAME, FORMAT_VERSION = "cgcnn-calibration", 1

#: Why the original checkpoints have neither intervals nor distances.
ORIGINAL_REASON = (
    "no intervals or distances: the original checkpoints were trained on Materials Project with no validation "
    "block of ours they did not see, and their training set is not shipped"
)


@dataclass
class Uncertainty:
    """What a model (or an ensemble) knows about its own errors: a calibration and an applicability domain.

    Attributes:
        checkpoints: sha256 of the checkpoint file(s) it was measured with, in member order.
        calibration: the conformal scores (None: no intervals).
        domain: the training crystals' features (None: no distances; an ensemble uses its members' domains).
    """

    checkpoints: list[str]
    calibration: Calibration | None = None
    domain: Domain | None = None


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (what ties a calibration to one checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibration_path(model_file: str | Path) -> Path:
    """``NAME.calibration.npz`` beside ``NAME.pt`` (or beside an ensemble's ``NAME.json``)."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name.rsplit(".", 1)[0] + ".calibration.npz")


def save_uncertainty(path: str | Path, uncertainty: Uncertainty) -> Path:
    """Write ``uncertainty`` as ``.npz`` (replaced in one step: a crash leaves the old file intact)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT_NAME),
        "format_version": np.array(FORMAT_VERSION),
        "checkpoints": np.array(uncertainty.checkpoints, dtype=str),
    }
    if uncertainty.calibration is not None:
        cal = uncertainty.calibration
        arrays.update(target=np.array(cal.target), method=np.array(cal.method), scores=cal.scores)
    if uncertainty.domain is not None:
        dom = uncertainty.domain
        arrays.update(domain_mean=dom.mean, domain_scale=dom.scale, domain_train=dom.train)
        arrays["domain_reference"] = np.array(dom.reference)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def read_uncertainty(path: str | Path) -> Uncertainty:
    """Read a calibration file (its hashes are checked by :func:`matching_uncertainty`).

    Raises:
        ValueError: not a calibration file of this version, or an unreadable one.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != FORMAT_NAME or int(data["format_version"]) != FORMAT_VERSION:
                raise ValueError(f"not a calibration file of version {FORMAT_VERSION}")
            calibration = domain = None
            if "scores" in data:
                calibration = Calibration(str(data["target"]), str(data["method"]), np.asarray(data["scores"]))
            if "domain_train" in data:
                domain = Domain(
                    np.asarray(data["domain_mean"]),
                    np.asarray(data["domain_scale"]),
                    np.asarray(data["domain_train"]),
                    float(data["domain_reference"]),
                )
            return Uncertainty([str(h) for h in data["checkpoints"]], calibration, domain)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"unreadable calibration file {Path(path).name} ({exc})") from None


def matching_uncertainty(path: Path, name: str, checkpoints: list[str]) -> tuple[Uncertainty | None, str]:
    """The calibration at ``path`` if it was measured with exactly ``checkpoints`` (sha256), and a problem line.

    No file: ``(None, "")`` (a model that simply has none says nothing). A file from other checkpoints, or one
    that cannot be read: ``(None, "<name>: ...")``, one line for the user; the intervals stay empty.
    """
    if not path.is_file():
        return None, ""
    try:
        uncertainty = read_uncertainty(path)
    except ValueError as exc:
        return None, f"{name}: {exc}; no intervals or distances"
    if uncertainty.checkpoints != checkpoints:
        return None, (
            f"{name}: its calibration ({path.name}) was measured with another checkpoint; no intervals or "
            "distances until it is calibrated again (python -m cgcnn calibrate)"
        )
    return uncertainty, ""
