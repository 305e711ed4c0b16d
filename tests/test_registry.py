import pytest

from decafbench.errors import InputError, RegistryError
from decafbench.registry import Registry, load_target


class Base:
    pass


class Child(Base):
    pass


def test_lazy_target_is_loaded_and_checked():
    from decafbench.errors import DecafError

    reg = Registry("thing", base=DecafError)
    reg.add("child", "decafbench.errors:InputError", "a child")
    reg.add("bad", "decafbench.registry:load_target")
    assert reg.get("child") is InputError
    assert reg.describe("child") == "a child"
    with pytest.raises(RegistryError, match="not a subclass of DecafError"):
        reg.get("bad")


def test_unknown_name_suggests_close_matches():
    reg = Registry("adapter")
    reg.add("qwen2-vl", Child)
    reg.add("internvl", Child)
    with pytest.raises(RegistryError, match=r"did you mean 'qwen2-vl'") as info:
        reg.get("qwen2vl")
    assert "\n" not in str(info.value)
    assert isinstance(info.value, InputError)


def test_collision_is_an_error_and_glob_listing():
    reg = Registry("variant")
    reg.add("decaf", Child)
    reg.add("decaf-no-smoothing", Child)
    reg.add("object-only", Child)
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("decaf", Base)
    assert reg.names("decaf*") == ["decaf", "decaf-no-smoothing"]
    assert reg.names() == ["decaf", "decaf-no-smoothing", "object-only"]


@pytest.mark.parametrize("target", ["nocolon", "no_such_module_xyz:thing", "decafbench.registry:NoSuchAttr"])
def test_bad_targets_are_one_line_errors(target):
    with pytest.raises(RegistryError) as info:
        load_target(target)
    assert "\n" not in str(info.value)


def test_did_you_mean_is_one_helper_with_one_format():
    from decafbench.registry import did_you_mean

    assert did_you_mean("sigm", ["sigma", "clamp"]) == "; did you mean 'sigma'?"
    assert did_you_mean("zzz", ["sigma", "clamp"]) == ""
    assert did_you_mean("decaff", ["decaf", "decaf-x", "object-only"], n=1) == "; did you mean 'decaf'?"


def test_object_targets_are_checked_when_registered_and_can_be_removed():
    reg: Registry[type[Base]] = Registry("thing", base=Base)
    reg.add("child", Child)
    assert reg.get("child") is Child
    with pytest.raises(RegistryError, match="not a subclass of Base"):
        reg.add("wrong", InputError)  # an object target fails where it is registered
    assert "wrong" not in reg
    with pytest.raises(RegistryError, match="name must be a non-empty string"):
        reg.add(" ", Child)
    reg.remove("child")
    assert "child" not in reg and reg.names() == []
    with pytest.raises(RegistryError, match="unknown thing 'child'"):
        reg.remove("child")


def test_did_you_mean_lives_in_one_place():
    """Registries, fusion parameters, sweep keys and run settings all use the one helper."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    users = sorted(str(p.relative_to(root)) for folder in ("harness", "adapters", "benchmarks")
                   for p in (root / folder).rglob("*.py") if "difflib" in p.read_text())
    assert users == ["harness/registry.py"]
