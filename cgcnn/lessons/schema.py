"""Lessons as TOML files: question → prediction → experiment → discussion, one step at a time.

A lesson is a small TOML file a teacher can read and write (the shipped ones are in ``lessons/`` at the top of
the project; a teacher may upload their own). Its schema (the reference with an example: ``docs/class.md``)::

    title = "Does freezing help?"
    description = "..."

    [[steps]]
    kind = "question"            # question | experiment | reveal | explore
    id = "guess"
    text = "..."                 # shown as plain text, never as Markdown or HTML
    answer = {type = "choice", options = ["yes", "no"]}     # or {type = "number", unit = "eV"}

    [[steps]]
    kind = "experiment"
    id = "grid"
    pretrained = ["none", "own-combined"]   # "none": trained from scratch
    freeze = [0, 1, 2, 3]
    sizes = [250]                # training crystals (several: a learning curve)
    ...                          # strategy, seeds, split_seeds, baselines, target, val, test, epochs

    [[steps]]
    kind = "reveal"
    question = "guess"
    experiment = "grid"
    view = "table2"              # table2 | learning_curve | comparison

Why it is checked here, before anything is queued: a lesson is started in front of 30 students, so a typo must
be refused when the file is uploaded or checked (``python -m cgcnn lesson check FILE``), not found when the
fourth step fails in every student's worker. :func:`parse_lesson` refuses unknown keys, wrong types, a grid
past the server's limits (``CGCNN_MAX_CRYSTALS``, ``CGCNN_MAX_EPOCHS``), a model the zoo does not know, a step
naming a missing step, and duplicate ids; its :class:`LessonError` names the step (number and id), the key and
the line (:mod:`cgcnn.lessons.source`). The checks against this server (models, limits, data) are in
:mod:`cgcnn.lessons.checks`.

Texts are stored exactly as written: the pages render them as plain text (the text of a lesson is a teacher's,
but an uploaded file is still untrusted input).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import tomllib
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from cgcnn.errors import CGCNNError
from cgcnn.experiments.sweep import SweepGrid
from cgcnn.lessons import checks
from cgcnn.lessons.source import SourceLines
from cgcnn.paths import project_path
from cgcnn.runs import estimates
from cgcnn.settings import Limits, current_limits
from cgcnn.training.finetune import FinetuneSpec
from cgcnn.training.protocol import STUDY
from cgcnn.training.transfer import SCRATCH

#: Step kinds, in the order the docs present them.
KINDS = ("question", "experiment", "reveal", "explore")
#: Answer types of a question.
ANSWER_TYPES = ("choice", "number")
#: What a reveal shows beside the class's answers.
VIEWS = ("table2", "learning_curve", "comparison")
#: Fine-tuning strategies of the shared vocabulary (issue 19; ``freeze`` is today's: freeze ``k`` layers, train
#: the rest). A strategy other than ``freeze`` runs only once :class:`FinetuneSpec` has a ``strategy`` field.
STRATEGIES = ("freeze", "discriminative", "gradual", "lp-ft", "l2sp")
#: Baselines without a network (issue 19): the training mean, and a fit on the composition alone.
BASELINES = ("mean", "composition")
#: Pages an explore step may open, with the address keys each understands. ``viewer``: the Crystal viewer
#: (``cgcnn.app.viewer.URL_KEYS``, a test keeps them equal) and ``remove``/``removal``, its "Remove the top N
#: edges" of issue 20.
EXPLORE_PAGES: dict[str, tuple[str, ...]] = {
    "viewer": ("crystal", "model", "layer", "head", "atom", "edges", "k", "colour", "atoms", "fixed", "remove",
               "removal"),
}  # fmt: skip
#: The folder of the shipped lessons (top level of the project, beside ``pretrained/`` and ``assets/``).
LESSONS_DIR = "lessons"

#: Most cells one experiment may deal (a class of 30 with a few cells each; a typo like ``seeds = [0, 10000]``
#: written as a range must not deal thousands of runs).
MAX_CELLS = 500
#: Longest lesson file (the shipped ones are about 2,000 characters).
MAX_SOURCE_CHARS = 200_000

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_TOP_KEYS = ("title", "description", "steps")
_STEP_KEYS = {
    "question": ("kind", "id", "text", "answer"),
    "experiment": ("kind", "id", "text", "pretrained", "freeze", "strategy", "sizes", "seeds", "split_seeds",
                   "baselines", "target", "val", "test", "epochs"),
    "reveal": ("kind", "id", "text", "question", "experiment", "view"),
    "explore": ("kind", "id", "page", "params", "prompt"),
}  # fmt: skip
_ANSWER_KEYS = {"choice": ("type", "options"), "number": ("type", "unit")}


class LessonError(CGCNNError):
    """A lesson that cannot be used as written; the message names the step (number and id), the key and the line.

    Attributes:
        step: 1-based step number (None: the top level of the file).
        step_id: the step's id ("" when it has none).
        key: the key at fault (dotted for nested keys, e.g. ``answer.options``; None: the step as a whole).
        line: 1-based line of the file where the key (or the step) is written.
        reason: the message without its location.
    """

    def __init__(
        self,
        reason: str,
        step: int | None = None,
        step_id: str = "",
        key: str | None = None,
        line: int | None = None,
        name: str = "",
    ) -> None:
        self.reason, self.step, self.step_id, self.key, self.line = reason, step, step_id, key, line
        where = [name] if name else []
        if line is not None:
            where.append(f"line {line}")
        if step is not None:
            where.append(f"step {step}" + (f" (id {step_id!r})" if step_id else ""))
        if key:
            where.append(f"key {key!r}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


# --------------------------------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Question:
    """A question the class answers (a prediction before the experiment, a reading of the result after).

    Attributes:
        id: unique in the lesson; answers are stored under it.
        text: the question, shown as plain text.
        answer_type: ``choice`` (one of ``options``) or ``number`` (in ``unit``).
        options: the choices (empty for a number).
        unit: the unit of a number ("" when none).
    """

    id: str
    text: str
    answer_type: str
    options: tuple[str, ...] = ()
    unit: str = ""

    kind = "question"

    def check_answer(self, raw: str) -> str:
        """The stored form of an answer, or :class:`LessonError` with the reason it is refused.

        A choice is matched ignoring case and surrounding spaces and stored as the option is written; a number
        accepts a decimal comma and is stored as Python writes the float (finite only).
        """
        text = str(raw).strip()
        if self.answer_type == "choice":
            for option in self.options:
                if text.casefold() == option.strip().casefold():
                    return option
            raise LessonError(f"{text!r} is not one of the choices: {', '.join(self.options)}")
        decimal_comma = text.count(",") == 1 and "." not in text
        try:
            value = float(text.replace(",", ".") if decimal_comma else text)
        except ValueError:
            unit = f" ({self.unit})" if self.unit else ""
            raise LessonError(f"{text!r} is not a number: write a number such as 0.35{unit}") from None
        if not math.isfinite(value):
            raise LessonError(f"{text!r} is not a finite number")
        return repr(value)


@dataclass(frozen=True)
class Experiment:
    """A grid the class runs together (the ``sweep`` vocabulary); each cell is one fine-tune.

    Attributes:
        id: unique in the lesson; reveals name it.
        pretrained: models to fine-tune, ``none`` for training from scratch (zoo names).
        freeze: freeze depths of each pretrained model (scratch always runs with 0).
        strategy: fine-tuning strategy (:data:`STRATEGIES`).
        sizes: training crystals; several make a learning curve.
        seeds: model seeds.
        split_seeds: canonical splits (the unit of the class's error bands).
        baselines: networkless baselines (:data:`BASELINES`), one run per split.
        target: the label learned.
        val, test: validation and test crystals.
        epochs: epochs of every run.
        text: what the students read on this step (plain text; may be empty).
    """

    id: str
    pretrained: tuple[str, ...]
    freeze: tuple[int, ...] = (0,)
    strategy: str = "freeze"
    sizes: tuple[int, ...] = (STUDY.n_train,)
    seeds: tuple[int, ...] = (0,)
    split_seeds: tuple[int, ...] = (0,)
    baselines: tuple[str, ...] = ()
    target: str = STUDY.target
    val: int = STUDY.n_val
    test: int = STUDY.n_test
    epochs: int = STUDY.epochs
    text: str = ""

    kind = "experiment"

    @property
    def models(self) -> tuple[str, ...]:
        """The pretrained models (without ``none``)."""
        return tuple(p for p in self.pretrained if p != SCRATCH)

    def grid(self, n_train: int | None = None) -> SweepGrid:
        """The sweep grid of this experiment (of one training size: ``n_train``, default the first size).

        Where :class:`SweepGrid` has a ``sizes`` field (the learning-curve branch) and ``n_train`` is not given,
        the grid holds every size. Strategy and baselines are passed only when the grid has those fields; an
        experiment that needs one the grid lacks raises :class:`LessonError` (this version cannot run it).
        """
        names = {f.name for f in dataclasses.fields(SweepGrid)}
        values: dict[str, Any] = {
            "pretrained": list(self.models),
            "freezes": list(self.freeze),
            "seeds": list(self.seeds),
            "baseline": SCRATCH in self.pretrained,
            "target": self.target,
            "n_train": self.sizes[0] if n_train is None else int(n_train),
            "n_val": self.val,
            "n_test": self.test,
            "split_seed": self.split_seeds[0],
            "split_seeds": list(self.split_seeds) if len(self.split_seeds) > 1 else None,
            "hyperparams": {"epochs": self.epochs},
        }
        if n_train is None and len(self.sizes) > 1:
            if "sizes" not in names:
                raise LessonError(f"experiment {self.id!r}: several sizes need a sweep grid with sizes (issue 19)")
            values["sizes"] = list(self.sizes)
        for name, value, default in (("strategy", self.strategy, "freeze"), ("baselines", list(self.baselines), [])):
            if name in names:
                values[name] = value
            elif value != default:
                raise LessonError(
                    f"experiment {self.id!r}: {name} {value!r} needs the {name} of issue 19, which this version of "
                    "cgcnn cannot run yet"
                )
        return SweepGrid(**values)

    def estimated_seconds(self, speed: estimates.Speed | None = None) -> float:
        """Seconds of training the whole grid takes, one cell after another on the server's cores.

        The one speed model of the app's previews (:mod:`cgcnn.runs.estimates`; default: its measured fallback,
        35 s for 2000 crystals x 30 epochs on 2 cores). A baseline fits no network: its cells cost their set-up
        only.
        """
        speed = speed or estimates.Speed(estimates.FALLBACK_SECONDS_PER_CRYSTAL_EPOCH)
        cells = [
            (n, self.epochs)
            for n in self.sizes
            for _ in self.split_seeds
            for _ in self.seeds
            for _ in range(len(self.models) * len(self.freeze) + (SCRATCH in self.pretrained))
        ]
        cells += [(n, 0) for n in self.sizes for _ in self.split_seeds for _ in self.baselines]
        return sum(speed.run_seconds(n + self.val, epochs) for n, epochs in cells)

    def cell_count(self) -> int:
        """How many cells :meth:`specs` gives, without building them (baselines: one per size and split)."""
        trained = len(self.models) * len(self.freeze) + (SCRATCH in self.pretrained)
        per_split = trained * len(self.seeds) + len(self.baselines)
        return len(self.sizes) * len(self.split_seeds) * per_split

    def specs(self) -> list[FinetuneSpec]:
        """Every cell, in grid order: per training size, the sweep grid's order (split, seed, then each model).

        The order is the dealing's (cell ``i`` goes to student ``i mod n``), so it never depends on anything
        but the lesson file.
        """
        specs: list[FinetuneSpec] = []
        for size in self.sizes:
            specs.extend(self.grid(size).specs())
        return specs


@dataclass(frozen=True)
class Reveal:
    """The class's answers to a question beside an experiment's outcome.

    Attributes:
        question: id of the question whose answers are shown ("": none).
        experiment: id of the experiment whose runs are shown ("": none, the answers alone).
        view: ``table2`` (heatmap of model × freeze depth), ``learning_curve`` or ``comparison``.
        id: optional id of the step.
        text: what the students read on this step (plain text).
    """

    question: str
    experiment: str
    view: str
    id: str = ""
    text: str = ""

    kind = "reveal"


@dataclass(frozen=True)
class Explore:
    """A page the students open with prepared settings (its address keys), and what to look for.

    Attributes:
        page: a key of :data:`EXPLORE_PAGES`.
        params: that page's address keys and values (as the address writes them: text).
        prompt: what to do there (plain text).
        id: optional id of the step.
    """

    page: str
    params: dict[str, str]
    prompt: str
    id: str = ""

    kind = "explore"


Step = Question | Experiment | Reveal | Explore


@dataclass(frozen=True)
class Lesson:
    """A lesson: its title and description (plain text), its steps, and the name it is known by.

    Attributes:
        title: shown to the class.
        description: for the teacher choosing it (with the grid's estimated duration for the shipped ones).
        steps: in order.
        name: the file's stem (a shipped lesson) or the upload's.
        source: the TOML text it was parsed from (stored with a lesson session, so an uploaded lesson resumes
            after a restart).
    """

    title: str
    description: str
    steps: tuple[Step, ...]
    name: str = ""
    source: str = field(default="", repr=False, compare=False)

    def step_by_id(self, step_id: str) -> Step | None:
        """The step with this id, or None."""
        return next((s for s in self.steps if s.id and s.id == step_id), None)

    def question(self, question_id: str) -> Question:
        """The question with this id (:class:`LessonError` if there is none)."""
        step = self.step_by_id(question_id)
        if not isinstance(step, Question):
            raise LessonError(f"this lesson has no question {question_id!r}")
        return step

    def experiment(self, experiment_id: str) -> Experiment:
        """The experiment with this id (:class:`LessonError` if there is none)."""
        step = self.step_by_id(experiment_id)
        if not isinstance(step, Experiment):
            raise LessonError(f"this lesson has no experiment {experiment_id!r}")
        return step

    @property
    def questions(self) -> list[Question]:
        """The question steps, in order."""
        return [s for s in self.steps if isinstance(s, Question)]

    @property
    def experiments(self) -> list[Experiment]:
        """The experiment steps, in order."""
        return [s for s in self.steps if isinstance(s, Experiment)]


# --------------------------------------------------------------------------------------------------- parsing


class _Reader:
    """Reads one table of the file, turning every problem into a :class:`LessonError` at its key and line."""

    def __init__(self, table: dict[str, Any], lines: SourceLines, name: str, step: int | None, step_id: str = ""):
        self.table, self.lines, self.name, self.step, self.step_id = table, lines, name, step, step_id

    def error(self, key: str | None, reason: str) -> LessonError:
        return LessonError(reason, self.step, self.step_id, key, self.lines.key_line(self.step, key), self.name)

    def only(self, allowed: tuple[str, ...], prefix: str = "", table: dict[str, Any] | None = None) -> None:
        for key in table if table is not None else self.table:
            if key not in allowed:
                near = get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise self.error(prefix + key, f"unknown key {key!r}{hint}; allowed here: {', '.join(allowed)}")

    def text(self, key: str, required: bool = True, default: str = "") -> str:
        if key not in self.table:
            if required:
                raise self.error(key, f"{key!r} is missing")
            return default
        value = self.table[key]
        if not isinstance(value, str):
            raise self.error(key, f"{key!r} must be text (in quotes), got {_shown(value)}")
        if required and not value.strip():
            raise self.error(key, f"{key!r} must not be empty")
        return value

    def identifier(self, key: str, required: bool) -> str:
        value = self.text(key, required=required)
        if value and not _ID.match(value):
            raise self.error(key, f"{value!r} is not a usable id: letters, digits, '-' and '_' (at most 40)")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, required=default is None, default=default or "")
        if value not in allowed:
            raise self.error(key, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def integers(self, key: str, default: tuple[int, ...], low: int, single: bool = False) -> tuple[int, ...]:
        if key not in self.table:
            return default
        value = self.table[key]
        values = [value] if not isinstance(value, list) else value
        if single and isinstance(value, list):
            raise self.error(key, f"{key!r} must be one whole number, got a list")
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise self.error(
                key, f"{key!r} must be {'a whole number' if single else 'whole numbers'}, got {_shown(value)}"
            )
        if min(values) < low:
            raise self.error(key, f"{key!r} must be at least {low}, got {min(values)}")
        if len(set(values)) < len(values):
            raise self.error(key, f"{key!r} lists a value twice: {_shown(value)}")
        return tuple(values)

    def integer(self, key: str, default: int, low: int) -> int:
        return self.integers(key, (default,), low, single=True)[0]

    def texts(self, key: str, default: tuple[str, ...], allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        if key not in self.table:
            return default
        value = self.table[key]
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
            raise self.error(key, f"{key!r} must be text or a list of texts, got {_shown(value)}")
        if len(set(values)) < len(values):
            raise self.error(key, f"{key!r} lists a value twice: {_shown(value)}")
        for v in values:
            if allowed is not None and v not in allowed:
                raise self.error(key, f"{v!r} is not one of {', '.join(allowed)}")
        return tuple(values)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _question(r: _Reader, step_id: str) -> Question:
    text = r.text("text")
    answer = r.table.get("answer")
    if answer is None:
        raise r.error("answer", '\'answer\' is missing: {type = "choice", options = [...]} or {type = "number"}')
    if not isinstance(answer, dict):
        raise r.error(
            "answer", f'\'answer\' must be a table such as {{type = "number", unit = "eV"}}, got {_shown(answer)}'
        )
    kind = answer.get("type")
    if kind not in ANSWER_TYPES:
        raise r.error("answer.type", f"answer type must be one of {', '.join(ANSWER_TYPES)}, got {_shown(kind)}")
    r.only(_ANSWER_KEYS[kind], prefix="answer.", table=answer)
    sub = _Reader(answer, r.lines, r.name, r.step, r.step_id)
    if kind == "choice":
        options = answer.get("options")
        if not isinstance(options, list) or not all(isinstance(o, str) and o.strip() for o in options):
            raise r.error("answer.options", "a choice needs 'options', a list of at least 2 non-empty texts")
        if len(options) < 2:
            raise r.error("answer.options", f"a choice needs at least 2 options, got {len(options)}")
        if len({o.strip().casefold() for o in options}) < len(options):
            raise r.error("answer.options", "two options are the same (ignoring case and spaces)")
        return Question(step_id, text, "choice", tuple(options))
    unit = sub.text("unit", required=False)
    return Question(step_id, text, "number", (), unit)


def _experiment(r: _Reader, step_id: str) -> Experiment:
    pretrained = r.texts("pretrained", ())
    if not pretrained:
        raise r.error("pretrained", "'pretrained' is missing: zoo model names, and \"none\" for training from scratch")
    for name in pretrained:
        if name in BASELINES:
            raise r.error("pretrained", f"{name!r} is a baseline: list it under 'baselines', not 'pretrained'")
    experiment = Experiment(
        id=step_id,
        pretrained=pretrained,
        freeze=r.integers("freeze", (0,), 0),
        strategy=r.choice("strategy", STRATEGIES, default="freeze"),
        sizes=r.integers("sizes", (STUDY.n_train,), 2),
        seeds=r.integers("seeds", (0,), 0),
        split_seeds=r.integers("split_seeds", (0,), 0),
        baselines=r.texts("baselines", (), BASELINES),
        target=r.text("target", required=False, default=STUDY.target) or STUDY.target,
        val=r.integer("val", STUDY.n_val, 1),
        test=r.integer("test", STUDY.n_test, 1),
        epochs=r.integer("epochs", STUDY.epochs, 1),
        text=r.text("text", required=False),
    )
    cells = experiment.cell_count()
    if cells > MAX_CELLS:
        lists = {k: len(getattr(experiment, k)) for k in ("pretrained", "freeze", "sizes", "seeds", "split_seeds")}
        key = max(lists, key=lambda k: (lists[k], k == "seeds"))
        raise r.error(key, f"this grid has {cells} cells, more than the {MAX_CELLS} a lesson deals to a class")
    return experiment


def _explore(r: _Reader, step_id: str) -> Explore:
    page = r.choice("page", tuple(EXPLORE_PAGES))
    params = r.table.get("params", {})
    if not isinstance(params, dict):
        raise r.error("params", f"'params' must be a table of the page's address keys, got {_shown(params)}")
    r.only(EXPLORE_PAGES[page], prefix="params.", table=params)
    values = {}
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise r.error(f"params.{key}", f"an address value must be text or a number, got {_shown(value)}")
        values[key] = str(value)
    return Explore(page, values, r.text("prompt"), step_id)


def _step(table: Any, number: int, lines: SourceLines, name: str) -> Step:
    if not isinstance(table, dict):
        raise LessonError("each step must be a [[steps]] table", number, "", None, lines.step_line(number), name)
    step_id = table.get("id") if isinstance(table.get("id"), str) else ""
    r = _Reader(table, lines, name, number, step_id)
    kind = r.choice("kind", KINDS)
    r.only(_STEP_KEYS[kind])
    step_id = r.identifier("id", required=kind in ("question", "experiment"))
    if kind == "question":
        return _question(r, step_id)
    if kind == "experiment":
        return _experiment(r, step_id)
    if kind == "reveal":
        question = r.text("question", required=False)
        experiment = r.text("experiment", required=False)
        if not question and not experiment:
            raise r.error("experiment", "a reveal names a 'question', an 'experiment', or both")
        return Reveal(
            question, experiment, r.choice("view", VIEWS, default="comparison"), step_id, r.text("text", False)
        )
    return _explore(r, step_id)


def _cross_check(steps: list[Step], lines: SourceLines, name: str) -> None:
    """Unique ids, and reveals naming an earlier question and experiment of the right kind."""
    seen: dict[str, tuple[int, Step]] = {}
    for number, step in enumerate(steps, start=1):
        r = _Reader({}, lines, name, number, step.id)
        if step.id:
            if step.id in seen:
                raise r.error("id", f"id {step.id!r} is already the id of step {seen[step.id][0]}; ids must be unique")
            seen[step.id] = (number, step)
        if isinstance(step, Reveal):
            for key, wanted, value in (
                ("question", Question, step.question),
                ("experiment", Experiment, step.experiment),
            ):
                if not value:
                    continue
                earlier = seen.get(value)
                if earlier is None or not isinstance(earlier[1], wanted):
                    ids = [s.id for _, s in seen.values() if isinstance(s, wanted)]
                    listed = ", ".join(repr(i) for i in ids) or "none"
                    raise r.error(key, f"no earlier {key} step has the id {value!r} (earlier {key}s: {listed})")
            if step.view == "learning_curve" and step.experiment:
                sizes = seen[step.experiment][1].sizes  # type: ignore[union-attr]
                if len(sizes) < 2:
                    raise r.error("view", "a learning curve needs an experiment with at least 2 'sizes'")
            if step.view in ("table2", "learning_curve") and not step.experiment:
                raise r.error("view", f"the view {step.view!r} shows an experiment: name one with 'experiment'")


def parse_structure(text: str, name: str = "") -> Lesson:
    """The lesson in ``text``, checked for its own consistency only (keys, types, ids; no server checks).

    A lesson session re-reads its stored source with this (it was fully checked when it was started).
    """
    if len(text) > MAX_SOURCE_CHARS:
        raise LessonError(
            f"the file has {len(text):,} characters; a lesson has at most {MAX_SOURCE_CHARS:,}", name=name
        )
    lines = SourceLines(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise LessonError(f"not valid TOML: {exc}", line=int(found.group(1)) if found else None, name=name) from None
    top = _Reader(data, lines, name, None)
    top.only(_TOP_KEYS)
    title = top.text("title")
    description = top.text("description", required=False)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise top.error("steps", "a lesson needs at least one [[steps]] table")
    steps = [_step(table, n, lines, name) for n, table in enumerate(raw_steps, start=1)]
    _cross_check(steps, lines, name)
    return Lesson(title, description, tuple(steps), name, text)


def parse_lesson(text: str, name: str = "") -> Lesson:
    """Parse and check a lesson: its schema, then this server's models, limits and data.

    Raises:
        LessonError: the first problem found, naming the step (number and id), the key and the line.
    """
    lesson = parse_structure(text, name)
    lines = SourceLines(text)
    for number, step in enumerate(lesson.steps, start=1):
        try:
            if isinstance(step, Experiment):
                checks.check_experiment(step)
            elif isinstance(step, Explore):
                checks.check_explore(step.page, step.params)
        except checks.Problem as problem:
            line = lines.key_line(number, problem.key)
            raise LessonError(problem.reason, number, step.id, problem.key, line, name) from None
    return lesson


def lessons_dir() -> Path:
    """The folder of the shipped lessons (``lessons/`` at the top of the project)."""
    return project_path(LESSONS_DIR)


def read_lesson(path: Path | str) -> Lesson:
    """Parse and check a lesson file (its name: the file's stem)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LessonError("not a text file (UTF-8)", name=path.name) from None
    except OSError as exc:
        raise LessonError(f"cannot read it: {exc.strerror or exc}", name=str(path)) from None
    return parse_lesson(text, path.stem)


def shipped_lessons() -> dict[str, Lesson]:
    """The lessons shipped in ``lessons/*.toml``, by name (the file's stem), in file-name order.

    Parsed and checked once per version of the files and of the limits (the Class page asks on every run).
    """
    folder = lessons_dir()
    files = tuple((str(p), p.stat().st_mtime_ns) for p in sorted(folder.glob("*.toml"))) if folder.is_dir() else ()
    return dict(_shipped(files, current_limits()))


@functools.lru_cache(maxsize=4)
def _shipped(files: tuple[tuple[str, int], ...], limits: Limits) -> tuple[tuple[str, Lesson], ...]:
    """``files`` (path, mtime) and ``limits`` are the cache's key: the checks read the limits themselves."""
    return tuple((Path(path).stem, read_lesson(path)) for path, _ in files)
