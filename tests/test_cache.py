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
    import os

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    before = file_digest([a, b])
    assert before != file_digest([b, a])  # order is part of the key
    # the same bytes elsewhere, or a newer mtime, are the same key: content, not names or times
    c, d = tmp_path / "copy" / "a", tmp_path / "copy" / "b"
    c.parent.mkdir()
    c.write_bytes(b"1")
    d.write_bytes(b"2")
    os.utime(a, (1, 1))
    assert file_digest([c, d]) == file_digest([a, b]) == before
    # one byte changed: a new key; changed back: the old key again
    b.write_bytes(b"3")
    assert file_digest([a, b]) != before
    b.write_bytes(b"2")
    assert file_digest([a, b]) == before
    # bytes moved across the boundary between two frames (NULs included) are different content
    a.write_bytes(b"x\0")
    b.write_bytes(b"y")
    moved = file_digest([a, b])
    a.write_bytes(b"x")
    b.write_bytes(b"\0y")
    assert file_digest([a, b]) != moved


def test_nan_maps_are_refused_and_unreadable_entries_are_misses(tmp_path, capsys):
    cache = AttentionCache(tmp_path)
    rec = _record()
    rec.obj_frame[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="obj_frame contains NaN"):
        cache.put("a" * 64, rec)
    key = "ab" + "0" * 62
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_bytes(b"garbage")
    assert cache.get(key) is None  # recomputed by the caller, never used
    assert cache.corrupt == 1 and cache.misses == 1 and cache.hits == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(cache.path(key)) in err and "recomputing" in err


def _flip_tensor_byte(path, offset_from_end=7):
    """Change one byte of tensor data (the end of the file), keeping the header valid."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x5A
    path.write_bytes(bytes(data))


def test_garbled_tensor_bytes_fail_the_digest_and_are_recomputed(tmp_path, capsys):
    cache = AttentionCache(tmp_path)
    key = cache_key({"expression": "the cat."})
    rec = _record()
    cache.put(key, rec)
    _flip_tensor_byte(cache.path(key))
    # the file still loads as safetensors: only the digest tells it is wrong
    from safetensors.torch import load_file

    garbled = load_file(str(cache.path(key)))
    assert any(not torch.equal(garbled[n], t) for n, t in rec.maps().items())
    assert cache.get(key) is None and cache.corrupt == 1
    assert "does not match its digest" in capsys.readouterr().err
    cache.put(key, rec)  # the caller recomputes and rewrites it
    got = cache.get(key)
    assert got is not None and all(torch.equal(getattr(got, n), t) for n, t in rec.maps().items())


def test_garbled_texts_fail_the_digest(tmp_path, capsys):
    import json
    import struct

    cache = AttentionCache(tmp_path)
    key = cache_key({"expression": "x"})
    cache.put(key, _record())
    path = cache.path(key)
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["decafbench"] = header["__metadata__"]["decafbench"].replace("cat", "dog")
    blob = json.dumps(header).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + n:])
    assert cache.get(key) is None and "digest" in capsys.readouterr().err


def test_cache_keys_from_records_cannot_name_paths(tmp_path):
    cache = AttentionCache(tmp_path)
    for bad in ("../../etc/passwd", "ab/../../x", "ZZ" * 32, ""):
        with pytest.raises(InputError, match="not a hex digest"):
            cache.get(bad)


def test_concurrent_writers_of_one_key_leave_one_whole_entry(tmp_path):
    import multiprocessing as mp

    key = cache_key({"expression": "race"})
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_put_many, args=(tmp_path, key, i)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = AttentionCache(tmp_path).get(key)
    assert got is not None  # digest verified: bytes of one writer, never a mix
    assert not [p for p in tmp_path.rglob("*.tmp")]


def _put_many(root, key, seed):
    cache = AttentionCache(root)
    g = torch.Generator().manual_seed(seed)
    for _ in range(15):
        rec = MapsRecord(torch.rand(8, 30, 40, generator=g), torch.rand(8, 30, 40, generator=g),
                         torch.rand(16, 30, 40, generator=g), torch.rand(16, 30, 40, generator=g), 2)
        cache.put(key, rec)


def test_disabled_cache_is_a_no_op():
    cache = AttentionCache(None)
    cache.put("k", _record())
    assert cache.get("k") is None
