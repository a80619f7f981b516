"""Fit a backend's settings to episodes a person accepted, so a team gets its own conventions.

The search space is the backend config's `search_space` (setting -> candidate values; a backend
without one has nothing to fit). Every combination is scored by micro boundary F1 at a tolerance
against the accepted subtasks; ties go to the combination that changes the fewest settings from
the starting config (so a profile only differs where the examples say it should). Leave-one-out
tells how well the fit carries over: each example is scored with settings fitted on the others.

The learned backend has no settings to search: it fine-tunes its network on the examples
(`calibrate_profile`), and the profile carries the weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from atomvla.errors import UserError
from atomvla.annotate.backends.base import Backend, BackendConfig, BackendError
from atomvla.annotate.evaluation.boundaries import BoundaryMatch, match_boundaries
from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.curate.store import Store
from atomvla.schemas import DecompositionError, EpisodeMeta, Status, Subtask

MIN_EXAMPLES = 2


class CalibrationError(UserError, ValueError):
    """Too few usable examples, or a backend with nothing to fit."""


@dataclass(frozen=True)
class Example:
    episode: Episode
    truth: tuple[Subtask, ...]


@dataclass(frozen=True)
class CalibrationReport:
    n_examples: int
    tolerance: int
    f1_before: float  # the starting settings on every example
    f1_loo: float  # each example scored with settings fitted on the others
    f1_fit: float  # the fitted settings on every example (in-sample)
    changed: dict[str, Any]  # settings that differ from the starting config
    loo_changed: list[dict[str, Any]]  # what each leave-one-out fit changed, to see if it is stable

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def accepted_examples(store: Store, author: str) -> list[Example]:
    """The episodes whose latest revision by `author` is `accepted`, with those subtasks as truth."""
    accepted = store.latest_all(author=author, status=Status.accepted)
    metas: dict[str, EpisodeMeta] = {m.episode_id: m for m in store.episodes()}
    return [Example(Episode(metas[i]), d.subtasks) for i, d in sorted(accepted.items()) if i in metas]


def _candidates(base: BackendConfig) -> list[BackendConfig]:
    """`base`, then every combination of the search space, fewest changes from `base` first."""
    space: dict[str, tuple[Any, ...]] = dict(getattr(type(base), "search_space", {}))
    if not space:
        raise CalibrationError(f"{type(base).__name__} declares no search_space: nothing to calibrate")
    keys = list(space)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
    configs = {base.model_dump_json(): base}  # the starting point is always tried, and first
    for combo in combos:
        config = base.model_copy(update=combo)
        configs.setdefault(config.model_dump_json(), config)
    return sorted(configs.values(), key=lambda c: len(_changed(base, c)))


def _changed(base: BackendConfig, config: BackendConfig) -> dict[str, Any]:
    a, b = base.model_dump(mode="json"), config.model_dump(mode="json")
    return {k: v for k, v in b.items() if a.get(k) != v}


def _score(backend: Backend, example: Example, tolerance: int) -> BoundaryMatch:
    truth = [s.start_frame for s in example.truth[1:]]
    try:
        predicted = [s.start_frame for s in backend.propose(example.episode).subtasks[1:]]
    except (BackendError, SourceError, DecompositionError):
        predicted = []
    return match_boundaries(predicted, truth, tolerance)


def _best(scores: Sequence[Sequence[BoundaryMatch]], keep: Sequence[int]) -> int:
    """Index of the config with the highest micro F1 over examples `keep` (first wins ties)."""
    totals = [sum((row[i] for i in keep), BoundaryMatch(0, 0, 0, ())).f1 for row in scores]
    return max(range(len(totals)), key=lambda c: (totals[c], -c))


def calibrate(
    backend_cls: type[Backend],
    examples: Sequence[Example],
    tolerance: int,
    base: BackendConfig | None = None,
    on_config: Callable[[], None] | None = None,
) -> tuple[BackendConfig, CalibrationReport]:
    """The settings that fit `examples` best, and the report (before / leave-one-out / fitted F1)."""
    if len(examples) < MIN_EXAMPLES:
        raise CalibrationError(f"{len(examples)} accepted episode(s); calibration needs at least {MIN_EXAMPLES} (3-5 work well)")
    base = base if base is not None else backend_cls.Config()
    configs = _candidates(base)
    scores: list[list[BoundaryMatch]] = []
    for config in configs:
        backend = backend_cls(config)
        scores.append([_score(backend, e, tolerance) for e in examples])
        if on_config is not None:
            on_config()
    everyone = range(len(examples))
    fitted = configs[_best(scores, everyone)]
    loo_total = BoundaryMatch(0, 0, 0, ())
    loo_changed = []
    for held in everyone:
        c = _best(scores, [i for i in everyone if i != held])
        loo_total += scores[c][held]
        loo_changed.append(_changed(base, configs[c]))
    f1 = lambda row: sum(row, BoundaryMatch(0, 0, 0, ())).f1  # noqa: E731
    report = CalibrationReport(
        n_examples=len(examples),
        tolerance=tolerance,
        f1_before=f1(scores[0]),  # configs[0] is `base` itself: no changes sort first
        f1_loo=loo_total.f1,
        f1_fit=f1(scores[configs.index(fitted)]),
        changed=_changed(base, fitted),
        loo_changed=loo_changed,
    )
    return fitted, report


def n_candidates(backend_cls: type[Backend], base: BackendConfig | None = None) -> int:
    """How many settings combinations `calibrate` tries (for a progress bar)."""
    return len(_candidates(base if base is not None else backend_cls.Config()))



# Leave-one-out needs one fine-tune per example: past this many examples, k-fold with this many folds.
LEARNED_FOLDS = 5


def _learned_report(examples: Sequence[Example], tolerance: int, on_step: Callable[[], None] | None):
    """Fine-tune the learned backend's model on `examples`: the backend running the result, its
    weights, and the report (before: the starting weights; leave-one-out: each example scored by a
    model fine-tuned without it, k-fold past LEARNED_FOLDS examples; fitted: in-sample)."""
    from atomvla.annotate.backends.learned import LearnedBackend
    from atomvla.annotate.learned import fine_tune, learned_backend
    from atomvla.annotate.learned.features import GRID_FPS
    from atomvla.annotate.learned.train import KEEP_REACH, KEPT_START, MAX_EXEMPLAR_FRAMES, MAX_EXEMPLARS, PRIOR_REACH

    start = LearnedBackend()
    start.prepare()  # missing or damaged packaged weights: one line, before any work
    assert start.model is not None
    episodes = [e.episode for e in examples]
    truths = [list(e.truth) for e in examples]
    tick = on_step or (lambda: None)
    before = [_score(start, e, tolerance) for e in examples]
    tick()
    folds = min(len(examples), LEARNED_FOLDS)
    loo: list[BoundaryMatch] = [BoundaryMatch(0, 0, 0, ())] * len(examples)
    for fold in range(folds):
        held = [i for i in range(len(examples)) if i % folds == fold]
        keep = [i for i in range(len(examples)) if i % folds != fold]
        tuned = learned_backend(fine_tune(start.model, [episodes[i] for i in keep], [truths[i] for i in keep]))
        for i in held:
            loo[i] = _score(tuned, examples[i], tolerance)
        tick()
    model = fine_tune(start.model, episodes, truths)
    backend = learned_backend(model)
    fitted = [_score(backend, e, tolerance) for e in examples]
    tick()
    total = lambda row: sum(row, BoundaryMatch(0, 0, 0, ())).f1  # noqa: E731
    info = model.info
    changed = {"weights": (f"pretrained, kept: it proposes every boundary of the {len(examples)} episodes within "
                           f"{KEEP_REACH / GRID_FPS:g} s, so fine-tuning would only fit their particulars"
                           if KEPT_START in info.extra else f"fine-tuned on {len(examples)} episodes"),
               "subtask count": f"plan{info.plan_offset:+d}" if info.count_from_plan else "the model's own"}
    if info.boundary_shift:  # a timing convention the network still missed after fitting
        changed["boundary shift (grid frames)"] = ", ".join(f"{s:+.1f}" for s in info.boundary_shift)
    # the priors' decisions match boundaries within PRIOR_REACH, not the report's tolerance: say so,
    # or a "network 1.00" beside "F1 before 0.00" reads as a contradiction
    here = f"F1 within {PRIOR_REACH / GRID_FPS:g} s here"
    if "prior_heuristic_f1" in info.extra:  # whether decoding still leans on the heuristic (see train.kept_prior)
        kept = "kept" if info.heuristic_prior else "off"
        changed["heuristic prior"] = f"{kept} ({here}: heuristic {info.extra['prior_heuristic_f1']}, network {info.extra['prior_network_f1']})"
    # which accepted episodes new ones are aligned to: too long or past the limit, an episode is none
    changed["exemplars"] = (f"{len(model.exemplars)} of {len(examples)} accepted episodes (at most {MAX_EXEMPLARS}, "
                            f"each at most {MAX_EXEMPLAR_FRAMES / GRID_FPS:.0f} s)")
    if "alignment_f1" in info.extra:  # whether decoding leans on the exemplars' alignment (see train.kept_alignment)
        kept = f"kept at weight {info.alignment_prior:g}" if info.alignment_prior else "off"
        changed["alignment prior"] = (f"{kept} ({here}: accepted episodes aligned to the others of their instruction {info.extra['alignment_f1']}, "
                                      f"network {info.extra['alignment_network_f1']})")
    else:
        changed["alignment prior"] = "off (aligning needs 2 exemplars)"
    report = CalibrationReport(
        n_examples=len(examples), tolerance=tolerance, f1_before=total(before), f1_loo=total(loo),
        f1_fit=total(fitted), changed=changed, loo_changed=[],
    )
    return backend, report, model.to_bytes()


def calibrate_profile(
    backend_cls: type[Backend], examples: Sequence[Example], tolerance: int, on_step: Callable[[], None] | None = None
) -> tuple[Backend, CalibrationReport, bytes | None]:
    """What `atom-annotate calibrate` saves as a profile: the backend fitted to `examples`, the
    report, and model weights where fitting trains a model (the learned backend fine-tunes its
    network; the others search their settings, see `calibrate`)."""
    if len(examples) < MIN_EXAMPLES:
        raise CalibrationError(f"{len(examples)} accepted episode(s); calibration needs at least {MIN_EXAMPLES} (3-5 work well)")
    if backend_cls.name == "learned":
        return _learned_report(examples, tolerance, on_step)
    config, report = calibrate(backend_cls, examples, tolerance, on_config=on_step)
    return backend_cls(config), report, None


def n_steps(backend_cls: type[Backend], n_examples: int) -> int:
    """How many times `calibrate_profile` calls `on_step` (for a progress bar)."""
    if backend_cls.name == "learned":
        return min(n_examples, LEARNED_FOLDS) + 2
    return n_candidates(backend_cls)
