"""The step cache's key: config, input files and the code that computed the result."""

from __future__ import annotations

from causal import cache


def test_key_changes_with_the_config_the_inputs_and_the_code(tmp_path, monkeypatch):
    data = tmp_path / "table.csv"
    data.write_text("a,b\n1,2\n")
    key = cache.cache_key("dml", {"clip": 0.05}, [data])
    assert key == cache.cache_key("dml", {"clip": 0.05}, [data])  # deterministic
    assert key != cache.cache_key("dml", {"clip": 0.01}, [data])
    data.write_text("a,b\n1,2\n3,4\n")
    changed_input = cache.cache_key("dml", {"clip": 0.05}, [data])
    assert changed_input != key
    # An edited or upgraded library must not be served the old code's numbers.
    monkeypatch.setattr(cache, "code_version", lambda: "another-build")
    assert cache.cache_key("dml", {"clip": 0.05}, [data]) != changed_input


def test_code_version_reads_the_installed_sources_without_importing_vision():
    import sys

    had_vision = "vision" in sys.modules
    version = cache.code_version()
    assert len(version) == 16 and int(version, 16) >= 0
    assert ("vision" in sys.modules) == had_vision
