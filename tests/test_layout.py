"""The package's floors: imports run one way, and ``import galsim_vae`` loads the core alone."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "galsim_vae"

CORE = {
    "galsim_vae",
    "galsim_vae._utils",
    "galsim_vae._version",
    "galsim_vae.errors",
    "galsim_vae.stamp",
    "galsim_vae.psf",
    "galsim_vae.nn",
    "galsim_vae.checkpoint",
    "galsim_vae.density",
    "galsim_vae.attributes",
    "galsim_vae.model",
    "galsim_vae.galaxy",
    "galsim_vae.scene",
    "galsim_vae.config",
}


def floor(module):
    """0-1 the core, 2 pipeline and training, 3 studies, 4 the CLI (docs/layout.md)."""
    parts = module.split(".")
    sub = parts[1] if len(parts) > 1 else ""
    return {"pipeline": 2, "training": 2, "studies": 3, "cli": 4, "__main__": 4}.get(sub, 1)


def _imports(path):
    """Every galsim_vae module ``path`` imports, at any depth of the file (functions too)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    mod = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    pkg = mod if rel.name == "__init__" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("galsim_vae"):
                if node.module is None:  # from . import x
                    out.update(f"{target}.{a.name}" for a in node.names)
                else:
                    out.add(target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("galsim_vae"))
    return mod, out


def test_imports_run_one_way():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mod, targets = _imports(path)
        for t in targets:
            same_package = t.split(".")[:2] == mod.split(".")[:2]
            if floor(t) > floor(mod) or (floor(t) == floor(mod) == 2 and not same_package):
                wrong.append(f"{mod} -> {t}")
    assert not wrong, "imports that run up (or across) a floor: " + ", ".join(wrong)


@pytest.mark.parametrize("statement", ["import galsim_vae", "import galsim, galsim_vae"])
def test_import_galsim_vae_loads_the_core_alone(statement):
    code = (
        f"{statement}, sys; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('galsim_vae')))); "
        "print(' '.join(m for m in ('sklearn', 'matplotlib', 'statmorph', 'distributed', 'emcee') "
        "if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ours, heavy = (r.stdout.splitlines() + [""])[:2]
    assert set(ours.split()) == CORE
    assert heavy == ""
