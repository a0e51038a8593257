"""A plain `pip install ogaudit` (no extras): `import ogaudit`, the audit, scoring, review and exports work; each
feature of an extra fails with an error naming that extra. Run in a fresh interpreter where the extras' packages
cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCKED = ("streamlit", "plotly", "bcrypt", "mlxtend", "datasets", "sentence_transformers", "peft", "ray")
"""What the extras bring (app, demo, hf, text, ray): none of it importable in the check below."""

CHECK = """
import importlib.abc, json, sys, tempfile
from pathlib import Path

import pytest

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Block())
import numpy as np
from sklearn.datasets import load_digits
import ogaudit
from ogaudit.cli import main
from ogaudit.errors import MissingExtra
from ogaudit.server.auth import UserStore

work = Path(tempfile.mkdtemp())
digits = load_digits()
x, y = (digits.images[:200] * 15).astype(np.uint8), digits.target[:200]  # 8x8 grey images
result = ogaudit.audit((x, y), ogaudit.AuditSettings(epochs=1, map_method="pca"), out_dir=work / "p",
                       cache_dir=work / "cache", progress=False)
ogaudit.Project(work / "p").decide("remove", result.scores["sample_id"][0], annotator="me")
for name, out in (("parquet", "t.parquet"), ("cleanlab", "t.csv")):
    assert main(["export", name, "--project", str(work / "p"), str(work / out)]) == 0, name
assert len(list(ogaudit.export(result, work / "fo", format="fiftyone").glob("data/*.png"))) == 200
said = {}
for what, call in (
    ("hf", lambda: ogaudit.export(result, work / "hf", format="hf")),
    ("mnist5k", lambda: ogaudit.load_dataset("mnist5k")),
    ("users", lambda: UserStore(work / "users.json").add("ana", "long enough secret", "admin")),
):
    try:
        call()
    except MissingExtra as error:
        said[what] = str(error)
print(json.dumps({"flagged": int(result.scores.flagged.sum()), "said": said,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
"""


@pytest.mark.slow  # trains a small CNN in a fresh interpreter (~15 s)
def test_the_core_works_without_the_extras_and_names_them_when_needed():
    code = f"BLOCKED = {BLOCKED!r}\n{CHECK}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["flagged"] > 0 and report["loaded"] == []
    assert "pip install 'ogaudit[hf]'" in report["said"]["hf"]
    assert "pip install 'ogaudit[demo]'" in report["said"]["mnist5k"]
    assert "pip install 'ogaudit[app]'" in report["said"]["users"]


def test_the_package_metadata_has_ranges_and_the_setup_installs_the_tested_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = project["dependencies"]
    assert not [d for d in core if "==" in d], "a pin in the package metadata: use a range (constraints.txt pins)"
    names = {d.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for d in core}
    assert not names & {"streamlit", "plotly", "bcrypt", "mlxtend"}, "the app and the demo data are extras"
    extras = project["optional-dependencies"]
    assert {"app", "demo", "hf", "all"} <= set(extras)
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "-c constraints.txt" in setup and all(f"{e}," in setup or f",{e}]" in setup for e in ("app", "demo", "hf"))
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    assert pins["torch"] and pins["torchvision"] and pins["mlxtend"]
