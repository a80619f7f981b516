import sys
import threading

import pytest

from atomvla.errors import UserError
from atomvla.registry import Registry

PLUGIN = """
import time
from {registry_module} import REGISTRY
time.sleep(0.3)  # a slow plug-in import: other threads look names up meanwhile
REGISTRY.register("plugged", "slow")
"""


def test_threads_looking_up_while_the_plugins_import_wait_for_them(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "reg_holder.py").write_text(
        "from atomvla.registry import Registry\nREGISTRY = Registry('thing', plugins=['slow_plugin'])\n"
    )
    (tmp_path / "slow_plugin.py").write_text(PLUGIN.format(registry_module="reg_holder"))
    from reg_holder import REGISTRY

    found, errors = [], []

    def look() -> None:
        try:
            found.append(REGISTRY["slow"])
        except UserError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=look) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and found == ["plugged"] * 4
    for name in ("reg_holder", "slow_plugin"):
        sys.modules.pop(name, None)


def test_an_unknown_name_suggests_close_ones():
    reg: Registry[int] = Registry("backend")
    reg.register(1, "heuristic")
    with pytest.raises(UserError, match=r"unknown backend 'heuristik' \(known: heuristic\); did you mean heuristic\?"):
        reg["heuristik"]
