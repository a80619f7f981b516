"""The runner with a backend that breaks the contract: reported per episode, nothing stored."""

from pathlib import Path

from atomvla.annotate.backends.base import Backend, BackendConfig
from atomvla.annotate.jobs.runner import run_backend
from atomvla.curate.episode import Episode
from atomvla.curate.sources import open_source
from atomvla.curate.store import Store
from atomvla.schemas import EpisodeMeta, Subtask

DATASET = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "metaworld_lerobot_v30"


class OverlappingBackend(Backend):
    """Answers overlapping subtasks for odd episodes, as a careless model might."""

    name = "overlapping"
    Config = BackendConfig

    @classmethod
    def can_handle(cls, meta: EpisodeMeta) -> bool:
        return True

    def segment(self, episode: Episode) -> tuple[list[Subtask], float | None]:
        n, cut = episode.meta.n_frames, episode.meta.n_frames // 2
        overlap = 3 if episode.meta.episode_index % 2 else 0
        return [
            Subtask(start_frame=0, end_frame=cut + overlap, instruction="first", skill="reach"),
            Subtask(start_frame=cut, end_frame=n, instruction="second", skill="push"),
        ], None


def test_contract_violations_are_reported_per_episode_and_not_stored(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    metas = [m for m in open_source(str(DATASET)).scan()]
    store.upsert_episodes(metas)
    result = run_backend(store, OverlappingBackend(), metas)
    odd = {m.episode_id for m in metas if m.episode_index % 2}
    assert {episode_id for episode_id, _ in result.failed} == odd
    assert all("(an overlap)" in why for _, why in result.failed)
    assert set(result.proposed) == {m.episode_id for m in metas} - odd
    assert set(store.latest_all()) == set(result.proposed)
