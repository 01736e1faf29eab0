"""The README's "From Python" and "Past one machine (Ray)" snippets run as written
(issue 19, item 4)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def snippets(section):
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end >= 0 else len(text)]
    blocks = re.findall(r"```python\n(.*?)```", body, re.S)
    assert blocks, f"no python snippet under `## {section}`"
    return blocks


def test_item4_readme_from_python_runs(capsys):
    for code in snippets("From Python"):
        exec(compile(code, "README.md", "exec"), {})
    assert "dimension mismatch in search: expected 64, got 32" in capsys.readouterr().out


def test_item4_readme_ray_runs(ray_cluster):
    pytest.importorskip("ray")
    for code in snippets("Past one machine (Ray)"):
        env = {}
        exec(compile(code, "README.md", "exec"), env)
        assert env["I"].shape == (50, 10) and (env["I"] >= 0).all()
