"""Record folder names: shell-safe slugs, deterministic and collision-free."""

from __future__ import annotations

import re
import subprocess

from decafbench.naming import record_folder_names, slug


def test_slugs_are_shell_safe_and_readable():
    assert slug("decaf") == ("decaf", True)
    assert slug("decaf[sigma=2.0]") == ("decaf-sigma2.0", True)
    assert slug("decaf[kernel_video=3,sigma=0.5]") == ("decaf-kernel_video3-sigma0.5", True)
    assert slug("sam2[pq=0.7,trk=0.8]") == ("sam2-pq0.7-trk0.8", True)
    assert slug("odd name/../x")[1] is False
    assert record_folder_names([("decaf[sigma=2.0]", "coarse"), ("decaf", "sam2[pq=0.7,trk=0.8]")]) == \
        ["decaf-sigma2.0__coarse", "decaf__sam2-pq0.7-trk0.8"]


def test_names_are_deterministic_and_collision_free():
    labels = [("a[b=1]", "coarse"), ("a-b1", "coarse"), ("x y", "coarse"), ("x_y", "coarse"), ("decaf", "coarse")]
    names = record_folder_names(labels)
    assert names == record_folder_names(labels)  # a pure function of the labels
    assert len(set(names)) == len(names)
    assert names[-1] == "decaf__coarse"  # unique and exact: no hash
    assert all(re.fullmatch(r"[A-Za-z0-9._+-]+", n) for n in names)


def test_a_slug_folder_globs_as_itself(tmp_path):
    name = record_folder_names([("decaf[sigma=2.0]", "coarse")])[0]
    (tmp_path / name).mkdir()
    res = subprocess.run(["bash", "-c", f"ls -d {name}*"], cwd=tmp_path, capture_output=True, text=True)
    assert res.stdout.split() == [name]
