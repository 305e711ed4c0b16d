"""A third-party adapter package, installed for real (a dist-info on sys.path), through `decaf run`."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

PLUGIN = textwrap.dedent('''
    """A plugin written only against the documented contract: from_checkpoint(checkpoint, options)."""
    import json
    import os

    from decafbench.adapters.base import Adapter, AdapterSpec
    from decafbench.adapters.qwen2_vl import Qwen2VLAdapter


    class TinyPluginAdapter(Adapter):
        family = "myplugin"  # declares no capability: reuse must never reach it

        def __init__(self, inner, checkpoint):
            self.inner, self.checkpoint = inner, checkpoint

        @classmethod
        def from_checkpoint(cls, checkpoint, options):
            with open(os.environ["PLUGIN_LOG"], "w") as fh:
                json.dump({"reuse": options.reuse, "prefix_reuse": options.prefix_reuse,
                           "model_args": dict(options.model_args), "dtype": options.dtype}, fh)
            return cls(Qwen2VLAdapter.from_checkpoint("tiny", options), checkpoint)

        def spec(self):
            return AdapterSpec(self.family, self.checkpoint, self.inner.spec().config)

        def open(self, frames, view):
            return self.inner.open(frames, view)

        def attend(self, session, prompt, *, max_new_tokens=8):
            return self.inner.attend(session, prompt, max_new_tokens=max_new_tokens)

        def answer(self, prompt, *, max_new_tokens=8):
            return self.inner.answer(prompt, max_new_tokens=max_new_tokens)
''')


@pytest.fixture
def plugin_site(tmp_path):
    """A 'site-packages' holding the plugin module and its distribution metadata."""
    site = tmp_path / "site"
    dist = site / "decaf_tiny_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "decaf_tiny_plugin.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: decaf-tiny-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[decafbench.adapters]\nmyplugin = decaf_tiny_plugin:TinyPluginAdapter\n")
    return site


def _decaf(site, log, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "PLUGIN_LOG": str(log)}
    return subprocess.run([sys.executable, "-m", "decafbench.cli", *args], env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.slow
def test_plugin_adapter_package_runs_end_to_end(plugin_site, tmp_path):
    from decafbench.runstore import read_record

    out, log = tmp_path / "out", tmp_path / "options.json"
    res = _decaf(plugin_site, log, "run", "--model", "myplugin:tiny", "--limit", "1", "--frames", "4", "--masks",
                 "coarse", "--out", str(out), "--cache", str(tmp_path / "cache"))
    assert res.returncode == 0, res.stdout + res.stderr
    # the contract: one options object; reuse switched off for a class that does not declare it
    assert json.loads(log.read_text()) == {"reuse": False, "prefix_reuse": False, "model_args": {}, "dtype": "float32"}
    rec = read_record(out / "decaf__coarse")
    assert rec.manifest["adapter"] == "myplugin" and rec.manifest["checkpoint"] == "tiny"
    assert len(rec.table) == 1 and rec.table["error"].iloc[0] == ""
    assert 0.0 <= rec.table["JF"].iloc[0] <= 1.0  # scored
    assert rec.table["vision_passes"].iloc[0] == 4  # no reuse: one encoder pass per prompt and view


def test_plugin_adapter_is_listed_and_unknown_names_suggest_it(plugin_site, tmp_path):
    res = _decaf(plugin_site, tmp_path / "log", "adapters", "list")
    assert res.returncode == 0 and "myplugin" in res.stdout and "decaf-tiny-plugin" in res.stdout, res.stdout + res.stderr
    res = _decaf(plugin_site, tmp_path / "log", "run", "--model", "myplugn:tiny", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "did you mean 'myplugin'?" in res.stderr and len(res.stderr.strip().splitlines()) == 1
