"""The house's shape, kept: no import circle, no import from a layer to one above it, a PyTorch backend that knows
nothing of runs, strategies, speculation or Ray (scripts/layers.py), and one parameter list for both entry points."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

from raytune_inc.model.tuning import tune
from raytune_inc.settings import RunSettings
from raytune_inc.space_tuning import tune_space

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_graph_has_no_circle_no_import_back_up_and_a_backend_that_knows_no_run():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "layers.py"), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "circles: 0" in done.stdout
    assert "imports that point back up (layers of LAYERS): 0" in done.stdout
    assert "backend imports of runs, strategies, speculation or Ray: 0" in done.stdout


def test_the_layers_script_sees_a_circle_and_an_import_back_up(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("layers", ROOT / "scripts" / "layers.py")
    layers = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "layers", layers)  # a dataclass looks its module up there
    spec.loader.exec_module(layers)
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert layers.circles(graph) == [["a", "b", "c"]]
    assert layers.floors(graph, layers.circles(graph)) == {"a": 1, "b": 1, "c": 1, "d": 2}
    assert layers.layer_of("raytune_inc.pytorch.lowering") < layers.layer_of("raytune_inc.run")
    source = tmp_path / "raytune_inc" / "pytorch" / "bad.py"
    source.parent.mkdir(parents=True)
    source.write_text("from ..run import TuningRun\n\ndef f():\n    import ray\n")
    monkeypatch.setattr(layers, "ROOT", tmp_path)
    known = {"raytune_inc.pytorch.bad", "raytune_inc.run"}
    found = layers.imports_of("raytune_inc.pytorch.bad", source, known)
    assert [(i.target, i.deferred) for i in found] == [("raytune_inc.run", False), ("ray", True)]


def test_tune_and_tune_space_take_the_defaults_of_the_one_settings_list():
    fields = {f.name: f.default for f in dataclasses.fields(RunSettings) if f.default is not dataclasses.MISSING}
    for entry in (tune, tune_space):
        parameters = inspect.signature(entry).parameters
        shared = [name for name in fields if name in parameters]
        assert len(shared) == 9, (entry.__name__, shared)
        for name in shared:
            assert parameters[name].default == fields[name], (entry.__name__, name)
