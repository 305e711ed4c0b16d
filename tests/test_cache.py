import pytest
import torch

from decafbench.cache import AttentionCache, MapsRecord, cache_key, file_digest
from decafbench.errors import InputError


def _record():
    g = torch.Generator().manual_seed(0)
    return MapsRecord(torch.rand(8, 3, 4, generator=g), torch.rand(8, 3, 4, generator=g),
                      torch.rand(16, 6, 8, generator=g), torch.rand(16, 6, 8, generator=g), 2,
                      texts={"obj_name": "cat", "object_video": ["cat"]}, stats={"vision_passes": 2})


def test_round_trip_is_exact_and_counts_hits(tmp_path):
    cache = AttentionCache(tmp_path)
    key = cache_key({"adapter": "qwen2-vl", "checkpoint": "tiny", "expression": "the cat."})
    assert cache.get(key) is None and cache.misses == 1
    rec = _record()
    cache.put(key, rec)
    got = cache.get(key)
    assert cache.hits == 1
    for name, t in rec.maps().items():
        assert torch.equal(getattr(got, name), t)
    assert got.temporal_stride == 2 and got.texts["obj_name"] == "cat" and got.stats == {"vision_passes": 2}
    # safetensors only: nothing that executes code on load
    assert [p.suffix for p in tmp_path.rglob("*") if p.is_file()] == [".safetensors"]


def test_key_changes_with_every_field():
    base = {"adapter": "qwen2-vl", "checkpoint": "tiny", "prompt_version": "v0", "frames": "abc", "expression": "x"}
    keys = {cache_key(base)}
    for k in base:
        keys.add(cache_key({**base, k: base[k] + "!"}))
    assert len(keys) == len(base) + 1
    assert cache_key(dict(reversed(list(base.items())))) == cache_key(base)


def test_file_digest_depends_on_content(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    assert file_digest([a, b]) != file_digest([b, a])


def test_nan_maps_are_refused_and_corrupt_entries_named(tmp_path):
    cache = AttentionCache(tmp_path)
    rec = _record()
    rec.obj_frame[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="obj_frame contains NaN"):
        cache.put("k" * 64, rec)
    key = "ab" + "0" * 62
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_bytes(b"garbage")
    with pytest.raises(InputError, match="corrupt attention cache entry"):
        cache.get(key)


def test_disabled_cache_is_a_no_op():
    cache = AttentionCache(None)
    cache.put("k", _record())
    assert cache.get("k") is None
