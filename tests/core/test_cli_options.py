"""The four console scripts agree on their flags: every command takes -v/--verbose, every store
option reads ATOMVLA_STORE, `--json` always takes a PATH, a flag name is a switch everywhere or
takes a value everywhere, `--dataset` is atom-train's alone, tolerances name their unit, and logs to a file keep a line whole."""

from __future__ import annotations

import importlib
from collections import defaultdict

import pytest
import typer

CLIS = {"atom-curate": "atomvla.curate.cli", "atom-annotate": "atomvla.annotate.cli",
        "atom-review": "atomvla.ui.cli", "atom-train": "atomvla.train.cli"}


def _commands():
    """(script and command path, click command) of every command that runs something."""
    for script, module in CLIS.items():
        root = typer.main.get_command(importlib.import_module(module).app)
        stack = [(script, root)]
        while stack:
            path, cmd = stack.pop()
            subs = getattr(cmd, "commands", {})
            stack.extend((f"{path} {name}", sub) for name, sub in subs.items())
            if cmd.callback is not None and (not subs or getattr(cmd, "invoke_without_command", False)):
                yield path, cmd


COMMANDS = dict(_commands())


def _options(cmd):
    return [p for p in cmd.params if p.param_type_name == "option"]


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_takes_verbose(path):
    names = {n for p in _options(COMMANDS[path]) for n in p.opts}
    assert {"-v", "--verbose"} <= names, f"{path}: no -v/--verbose"


def test_store_options_read_atomvla_store_and_json_takes_a_path():
    for path, cmd in COMMANDS.items():
        for p in _options(cmd):
            if "--store" in p.opts:
                assert p.envvar == "ATOMVLA_STORE", f"{path} --store"
            if "--json" in p.opts:
                assert not p.is_flag, f"{path} --json is a switch"


def test_a_flag_name_is_a_switch_everywhere_or_nowhere():
    kinds = defaultdict(set)
    for path, cmd in COMMANDS.items():
        for p in _options(cmd):
            for name in p.opts:
                kinds[name].add(("switch" if p.is_flag else "value", path))
    mixed = {n: sorted(k) for n, k in kinds.items() if len({kind for kind, _ in k}) > 1}
    assert not mixed, mixed


def test_dataset_is_atom_train_s_and_tolerances_name_their_unit():
    for path, cmd in COMMANDS.items():
        names = {n for p in _options(cmd) for n in p.opts}
        assert "--tolerance" not in names, path
        if not path.startswith("atom-train"):
            assert "--dataset" not in names, path


def test_a_log_line_written_to_a_file_is_not_wrapped_at_80_columns(tmp_path):
    """Logs of a nohup or CI run go to a file: a line of a long run's figures stays one line."""
    import subprocess
    import sys

    message = "step 100 loss 0.123456 lr 1.00e-03 grad_norm 0.5 tokens/s 12345 episodes 11 of 11 done"
    script = f"from atomvla.cli import setup_logging; import logging; setup_logging(); logging.getLogger('x').info({message!r})"
    log = tmp_path / "run.log"
    with log.open("w") as err:
        subprocess.run([sys.executable, "-c", script], stderr=err, check=True)
    assert message in log.read_text()
