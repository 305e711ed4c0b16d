"""Private third-party symbols: each is checked against the installed release, and a release
outside the tested range (or one that moved a symbol) fails with a message naming it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from decafbench import _compat_sam2
from decafbench.adapters import _compat_transformers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _pin(package: str) -> SpecifierSet:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["model"]
    spec = next(d for d in deps if d.startswith(package))
    return SpecifierSet(spec[len(package):])


@pytest.mark.parametrize("package, module", [("transformers", _compat_transformers), ("sam2", _compat_sam2)])
def test_installed_release_is_one_the_private_symbols_were_checked_on(package, module):
    # pyproject's pin and the module's TESTED move together; the installed release lies inside
    assert _pin(package) == SpecifierSet(module.TESTED), f"pyproject.toml pins {package} differently from {module.__name__}.TESTED"
    installed = Version(module.installed_version())
    assert installed in SpecifierSet(module.TESTED), (
        f"{package} {installed} is outside the tested range {module.TESTED}: run tests/test_compat.py's checks "
        f"against it, then raise the pin in pyproject.toml and {module.__name__}.TESTED")


def test_every_private_symbol_exists_in_the_installed_releases():
    _compat_transformers.check()
    _compat_sam2.check()


def test_a_moved_transformers_symbol_is_named_with_the_versions(monkeypatch):
    from transformers.modeling_utils import AttentionInterface

    monkeypatch.delattr(AttentionInterface, "_global_mapping")
    with pytest.raises(_compat_transformers.TransformersCompatError) as info:
        _compat_transformers.check()
    message = str(info.value)
    assert "AttentionInterface._global_mapping" in message
    assert f"transformers {_compat_transformers.installed_version()}" in message and "tested" in message
    with pytest.raises(_compat_transformers.TransformersCompatError, match="_global_mapping"):
        _compat_transformers.unregister_attention("anything")


def test_a_re_signed_sam2_method_is_named_with_the_versions():
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    class Renamed(SAM2VideoPredictor):
        def _get_image_feature(self, state, frame, batch):  # an upstream rename of the parameters
            raise AssertionError

    with pytest.raises(_compat_sam2.Sam2CompatError) as info:
        _compat_sam2.check(Renamed)
    message = str(info.value)
    assert "SAM2VideoPredictor._get_image_feature" in message and "inference_state" in message
    assert f"sam2 {_compat_sam2.installed_version()}" in message

    class Gone(SAM2VideoPredictor):
        _track_step = None

    with pytest.raises(_compat_sam2.Sam2CompatError, match="_track_step is gone"):
        _compat_sam2.check(Gone)


def test_the_private_names_are_used_only_through_the_compat_modules():
    """grep: no other module touches the private names the compat modules wrap."""
    root = Path(__file__).resolve().parents[1]
    names = ("_global_mapping", "_attn_implementation_internal", "_prepare_position_ids_for_generation",
             "_get_unpadded_features", "_run_single_frame_inference", "_get_orig_video_res_output",
             "eager_attention_forward")
    allowed = {Path("adapters/_compat_transformers.py"), Path("harness/_compat_sam2.py")}
    offenders = []
    for folder in ("harness", "adapters", "benchmarks"):
        for path in (root / folder).rglob("*.py"):
            if path.relative_to(root) in allowed:
                continue
            text = path.read_text()
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n in text]
    assert not offenders, offenders
