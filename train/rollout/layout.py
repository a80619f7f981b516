"""What a policy observes and emits, read from a checkpoint or a policy server, checked against an env."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atomvla.errors import UserError
from atomvla.train.sim import Layout


class LayoutError(UserError, ValueError):
    """A policy whose cameras, state or action do not match the environment's."""


def checkpoint_layout(path: Path) -> tuple[Path, Layout]:
    """The resolved checkpoint folder and its layout, from its small files (no model is loaded)."""
    from atomvla.train.assemble import STATS_FILE
    from atomvla.train.checkpoint import Checkpoint, CheckpointError, resolve_checkpoint
    from atomvla.train.data.normalize import Stats

    ckpt = Checkpoint(resolve_checkpoint(Path(path)))
    if ckpt.config.get("kind") != "sft":
        raise CheckpointError(f"{ckpt.path}: a {ckpt.config.get('kind')!r} checkpoint, not an SFT policy")
    stats = Stats.load(ckpt.path / STATS_FILE)
    return ckpt.path, Layout(tuple(ckpt.trainer_state["cameras"]), stats.state.names, stats.action.names)


def metadata_layout(metadata: Mapping[str, Any]) -> Layout:
    """The layout a policy server announces on connect (`serve.server.metadata`)."""
    return Layout(tuple(metadata["cameras"]), tuple(metadata["state"]), tuple(metadata["action"]))


def check_layout(policy: Layout, policy_name: str, env: Layout, env_name: str) -> None:
    """Raise a one-line LayoutError naming both sides unless `env` gives all `policy` needs."""
    problems = []
    if missing := [c for c in policy.cameras if c not in env.cameras]:
        problems.append(f"cameras {', '.join(missing)} (env has {', '.join(env.cameras) or 'none'})")
    if policy.state != env.state:
        problems.append(f"state ({', '.join(policy.state)}) but the env gives ({', '.join(env.state)})")
    if policy.action != env.action:
        problems.append(f"action ({', '.join(policy.action)}) but the env takes ({', '.join(env.action)})")
    if problems:
        raise LayoutError(f"{policy_name} does not fit {env_name}: it expects {'; '.join(problems)}")
