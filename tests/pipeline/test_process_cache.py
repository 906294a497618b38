"""The per-process cache builds each value once, and keys files by their absolute path."""

from __future__ import annotations

import os

from thresher.pipeline.process_cache import ProcessCache


def test_each_key_is_built_once():
    cache, built = ProcessCache(), []
    first = cache.get(("minhash", 128), lambda: built.append("a") or object())
    again = cache.get(("minhash", 128), lambda: built.append("b") or object())
    other = cache.get(("minhash", 64), lambda: built.append("c") or object())
    assert first is again and other is not first
    assert built == ["a", "c"]
    assert ("minhash", 128) in cache and ("minhash", 32) not in cache


def test_a_file_is_loaded_once_however_its_path_is_spelled(tmp_path, monkeypatch):
    model = tmp_path / "models" / "quality"
    model.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    cache, loads = ProcessCache(), []

    def load(path: str) -> str:
        loads.append(path)
        return f"model at {path}"

    spellings = ["models/quality", str(model), "./models/../models/quality", tmp_path / "link" / "quality"]
    values = {cache.by_path(spelling, load) for spelling in spellings}
    assert values == {f"model at {os.path.realpath(model)}"}
    assert loads == [os.path.realpath(model)]
    assert os.path.realpath(model) in cache
