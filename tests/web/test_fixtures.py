"""The golden fixtures of the web page's JavaScript ports (tests/web/fixtures/) are what the Python
code gives now: scripts/make_web_fixtures.py rewrites them when decoder or clustering change."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_web_fixtures.py"


@pytest.fixture(scope="module")
def fixtures_module():
    spec = importlib.util.spec_from_file_location("make_web_fixtures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fixtures_are_up_to_date(fixtures_module):
    built = fixtures_module.build_fixtures()
    assert sorted(built) == sorted(p.name for p in fixtures_module.FIXTURES_DIR.glob("*.json"))
    for name, document in built.items():
        on_disk = json.loads((fixtures_module.FIXTURES_DIR / name).read_text())
        assert on_disk == json.loads(fixtures_module._text(document)), (
            f"{name} is out of date: run .venv/bin/python scripts/make_web_fixtures.py"
        )


def test_fixtures_cover_what_the_ports_must_handle(fixtures_module):
    decode = json.loads((fixtures_module.FIXTURES_DIR / "decode.json").read_text())
    assert all(case["notes"] for case in decode["cases"])
    clustering = json.loads((fixtures_module.FIXTURES_DIR / "clustering.json").read_text())
    k_out = {case["name"]: case["k_out"] for case in clustering["cases"]}
    assert k_out["melodic line: one instrument"] == 1
    assert {case["settings"]["method"] for case in clustering["cases"]} == {"merge", "eigengap", "silhouette"}
    assert any(case["k"] is None and case["k_out"] > 1 for case in clustering["cases"])
