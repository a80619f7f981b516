"""The review app learns from what annotators accept: after each accept a worker thread fits a
backend to the accepted episodes of that dataset, saves it as the dataset's profile
(`review:<dataset>`), and proposes the dataset's untouched episodes again, the next ones in queue
order first, each with the profile and the number of accepts in its provenance. The `learned`
backend is fine-tuned (`atomvla.annotate.learned.fine_tune`, weights in the profile) when its
pretrained weights load; otherwise the backend's convention settings are calibrated
(`atomvla.annotate.calibrate.calibrate_profile`).

Untouched means: it holds no person's work (`Store.reviewed`, the rule `atom-annotate run` follows
too: its latest revision is a backend's own, or it has none, and nobody has a draft of it), and no
browser session has it open. The last check and the write happen under the lock the app holds
while it reads an episode and marks it open, so a page opens either the proposal before or the
re-proposal, never one replaced after it was read. Each re-proposal states the revision it was
based on, so a person's save that lands first wins and the re-proposal is dropped; the app, in
turn, lets a person's edit go over re-proposals that landed after they opened the episode
(`only_reproposals_since`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Collection

from atomvla.annotate.backends.base import BACKENDS, Backend, BackendError, get_backend
from atomvla.annotate.calibrate import MIN_EXAMPLES, CalibrationError, Example, calibrate_profile
from atomvla.annotate.evaluation.boundaries import BoundaryMatch, match_boundaries
from atomvla.annotate.profiles import save_profile
from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError, StaleRevisionError
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, DecompositionError, EpisodeMeta, Status

log = logging.getLogger(__name__)

TOLERANCE = 5  # frames: how close a fitted boundary must be to the accepted one to count
AUTHOR = "atom-review"  # author of the profiles the app saves
# Untouched episodes re-proposed in queue order before a newer fit may take the rest: where a fit
# takes longer than a person takes to accept the next episode (a loaded machine: 14 s a fit, an
# accept every 10 s), each fit found the next one wanted and re-proposed nothing.
AHEAD = 8


def learning_backend() -> str:
    """The backend the app fine-tunes: `learned` where it is registered and its pretrained weights
    load, else the heuristic (whose calibration fits its convention settings)."""
    if "learned" not in BACKENDS:
        return "heuristic"
    from atomvla.annotate.learned import load_pretrained
    from atomvla.annotate.learned.model import WeightsError

    try:
        load_pretrained()
    except WeightsError as exc:
        log.warning("learning with the heuristic: the learned backend's weights do not load (%s)", exc)
        return "heuristic"
    return "learned"


def profile_name(dataset: str) -> str:
    return f"review:{dataset}"


def is_reproposal(dec: Decomposition) -> bool:
    return dec.status is Status.proposed and dec.provenance is not None and dec.provenance.profile is not None


def only_reproposals_since(history: list[Decomposition], based_on: int) -> bool:
    """Every revision after `based_on` is a re-proposal made by the app: a person's edit begun on
    `based_on` may go over them (what they corrected was the older proposal; nothing is lost,
    history keeps both)."""
    newer = [d for d in history if d.revision > based_on]
    return bool(newer) and all(is_reproposal(d) for d in newer)


class Learner:
    """One worker thread per app. `accepted(episode_id)` asks for a new fit of that episode's
    dataset; several accepts that arrive during one fit are learned together in the next."""

    def __init__(self, store: Store, busy: Callable[[], Collection[str]], lock: threading.RLock,
                 backend: str | None = None):
        self.store = store
        self.backend_name = backend or learning_backend()
        self._busy = busy  # episodes open in a browser session right now
        self._open_lock = lock  # held by the app while it reads an episode and marks it open
        self._wanted: dict[str, str | None] = {}  # dataset -> episode just accepted (where to start)
        self._cond = threading.Condition()
        self._idle = True
        self._stop = False
        self.fits = Counter()  # dataset -> fits done (for tests and the log)
        self._thread = threading.Thread(target=self._loop, name="atom-review-learner", daemon=True)
        self._thread.start()

    # -- asked by the app -----------------------------------------------------------------

    def accepted(self, episode_id: str) -> None:
        dataset = self.store.episode(episode_id).dataset
        with self._cond:
            self._wanted[dataset] = episode_id
            self._idle = False
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is left to do (tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._idle, timeout)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    # -- the worker -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted or self._stop)
                if self._stop:
                    return
                dataset, after = self._wanted.popitem()
            try:
                self._learn(dataset, after)
            except Exception:  # a failed fit must not stop learning from the next accept
                log.exception("learning from the accepted episodes of %s failed", dataset)
            with self._cond:
                if not self._wanted:
                    self._idle = True
                    self._cond.notify_all()

    def _pending(self) -> bool:
        with self._cond:
            return bool(self._wanted)

    def _learn(self, dataset: str, after: str | None) -> None:
        metas = self.store.episodes(dataset)
        accepted = self.store.latest_all(status=Status.accepted, episode_ids=[m.episode_id for m in metas])
        examples = [Example(Episode(m), accepted[m.episode_id].subtasks) for m in metas if m.episode_id in accepted]
        if len(examples) < MIN_EXAMPLES:
            return
        backend = self.fit(dataset, examples)
        if backend is None:
            return
        self.fits[dataset] += 1
        self._repropose(backend, dataset, metas, after, len(examples))

    def fit(self, dataset: str, examples: list[Example]) -> Backend | None:
        """Fit the backend to `examples` and save it as the dataset's profile: the learned model is
        fine-tuned (weights in the profile), another backend's settings are calibrated. None when
        the fit does not match the accepted boundaries better than what made the proposals."""
        if self.backend_name == "learned":
            # One fine-tune per accept: calibrate_profile's leave-one-out would cost one per fold.
            backend, report, weights = _fine_tune(examples)
        else:
            try:
                backend, rep, weights = calibrate_profile(get_backend(self.backend_name), examples, TOLERANCE)
            except CalibrationError as exc:
                log.info("%s: nothing learned: %s", dataset, exc)
                return None
            report = rep.as_dict()
        # What carries over to episodes not yet seen: leave-one-out where the fit reports it.
        after = report.get("f1_loo", report["f1_fit"])
        log.info("%s: fitted %s on %d accepted episodes (boundary F1 %.2f before, %.2f after)", dataset,
                 self.backend_name, len(examples), report["f1_before"], after)
        if after <= report["f1_before"]:
            return None  # nothing learned that would make the proposals better: leave them be
        save_profile(self.store, backend, profile_name(dataset), report, AUTHOR, weights=weights)
        return backend

    def _repropose(self, backend: Backend, dataset: str, metas: list[EpisodeMeta], after: str | None, n: int) -> None:
        ids = [m.episode_id for m in metas]  # the queue's order within a dataset
        if after in ids:  # the episodes after the one just accepted are the ones opened next
            k = ids.index(after)
            metas = metas[k + 1:] + metas[:k]
        done = 0
        for meta in metas:
            if done >= AHEAD and self._pending():  # a newer fit is wanted: the rest get its proposals instead
                return
            done += self._repropose_one(backend, meta, dataset, n)

    def _repropose_one(self, backend: Backend, meta: EpisodeMeta, dataset: str, n: int) -> bool:
        """Re-propose one episode: True where it was this fit's to re-propose (re-proposed, the same
        proposal, or the backend could not propose it), False where it is someone's (open, a person's work)."""
        if self._in_use(meta.episode_id):
            return False
        latest = self.store.latest(meta.episode_id)
        try:
            dec = backend.propose(Episode(meta))
        except (BackendError, SourceError, DecompositionError) as exc:
            log.info("%s: not re-proposed: %s", meta.episode_id, exc)
            return True
        if latest is not None and latest.subtasks == dec.subtasks:
            return True  # the same proposal again says nothing new
        dec = dec.model_copy(update={"provenance": dec.provenance.model_copy(
            update={"profile": profile_name(dataset), "learned_from": n})})
        with self._open_lock:
            if self._in_use(meta.episode_id):
                return False  # opened while the proposal was made: the page shows what it opened, unchanged
            try:
                self.store.add_revision(dec, based_on=latest.revision if latest else 0)
            except StaleRevisionError:
                return False  # someone saved it meanwhile: theirs stands
        return True

    def _in_use(self, episode_id: str) -> bool:
        """Open in a page, or a person's work: a re-proposal would change what a person did or is looking at."""
        return episode_id in self._busy() or bool(self.store.reviewed([episode_id]))


def _f1(backend: Backend, examples: list[Example]) -> float:
    total = BoundaryMatch(0, 0, 0, ())
    for e in examples:
        try:
            predicted = backend.propose(e.episode).boundaries
        except (BackendError, SourceError, DecompositionError):
            predicted = []
        total += match_boundaries(predicted, [s.start_frame for s in e.truth[1:]], TOLERANCE)
    return total.f1


def _fine_tune(examples: list[Example]) -> tuple[Backend, dict, bytes]:
    """The learned model fine-tuned on `examples`, its report (the calibration report's keys that
    apply: no leave-one-out, which would cost a fine-tune per example) and its weights."""
    from atomvla.annotate.learned import fine_tune, learned_backend, load_pretrained

    base = load_pretrained()
    model = fine_tune(base, [e.episode for e in examples], [e.truth for e in examples])
    fitted = learned_backend(model)
    report = {"n_examples": len(examples), "tolerance": TOLERANCE,
              "f1_before": _f1(learned_backend(base), examples), "f1_fit": _f1(fitted, examples)}
    return fitted, report, model.to_bytes()
