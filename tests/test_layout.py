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
BASE = {"galsim_vae._utils", "galsim_vae._version", "galsim_vae.errors"}


def floor(module):
    """0 the helpers, 1 the core, 2 pipeline and training, 3 studies, 4 the CLI (docs/layout.md).

    The package's ``__init__`` sits with the core (it imports the core only)."""
    if module in BASE:
        return 0
    parts = module.split(".")
    sub = parts[1] if len(parts) > 1 else ""
    return {"pipeline": 2, "training": 2, "studies": 3, "cli": 4, "__main__": 4}.get(sub, 1)


def _module_name(path, root):
    rel = path.relative_to(root.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def imports(root=PACKAGE):
    """``{module: set of galsim_vae modules it imports}``, from every import statement at any
    depth (functions included); ``from galsim_vae import x`` counts as ``galsim_vae.x`` when x
    is a module; ``importlib.import_module`` of a galsim_vae module counts too."""
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for mod, path in modules.items():
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
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
                    for a in node.names:
                        sub = f"{target}.{a.name}"
                        out.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("galsim_vae"))
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("galsim_vae")
            ):
                out.add(node.args[0].value)
        graph[mod] = {t for t in out if t != mod}
    return graph


def violations(graph):
    """Imports that run up (or across, between pipeline and training) a floor, and cycles."""
    wrong = []
    for mod, targets in graph.items():
        for t in targets:
            across = floor(t) == floor(mod) == 2 and t.split(".")[:2] != mod.split(".")[:2]
            if floor(t) > floor(mod) or across:
                wrong.append(f"{mod} -> {t}")
    # Cycles among the modules (a package imports its own modules: that edge is not a cycle).
    state = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph.get(m, ()):
            if t == m.rsplit(".", 1)[0] or m == "galsim_vae":
                continue  # a module importing its own package's __init__
            if state.get(t) == 1:
                wrong.append("cycle: " + " -> ".join(stack[stack.index(t) :] + [t]))
            elif t in graph and t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    return wrong


def test_imports_run_one_way():
    wrong = violations(imports())
    assert not wrong, "imports that run up (or across) a floor, or cycles: " + ", ".join(wrong)


def test_the_check_sees_planted_violations(tmp_path):
    # The check above on a copy of the package with four planted faults: each must be seen.
    import shutil

    root = tmp_path / "galsim_vae"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("data", "__pycache__"))
    plants = {
        "_utils.py": "from .galaxy import VAEGalaxy\n",  # floor 0 -> 1
        "stamp.py": "from .model import get_model\n",  # a cycle with model -> stamp
        "psf.py": "def f():\n    from galsim_vae import pipeline\n",  # hidden upward import
        "density.py": "import importlib\nimportlib.import_module('galsim_vae.studies.plots')\n",
    }
    for name, code in plants.items():
        p = root / name
        p.write_text(p.read_text() + "\n" + code)
    wrong = " ".join(violations(imports(root)))
    assert "galsim_vae._utils -> galsim_vae.galaxy" in wrong
    assert "cycle:" in wrong and "galsim_vae.stamp" in wrong
    assert "galsim_vae.psf -> galsim_vae.pipeline" in wrong
    assert "galsim_vae.density -> galsim_vae.studies.plots" in wrong


@pytest.mark.parametrize("statement", ["import galsim_vae", "import galsim, galsim_vae"])
def test_import_galsim_vae_loads_the_core_alone(statement):
    heavy = ("sklearn", "matplotlib", "scipy.optimize", "statmorph", "distributed", "emcee")
    code = (
        f"{statement}, sys; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('galsim_vae')))); "
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ours, loaded = (r.stdout.splitlines() + [""])[:2]
    assert set(ours.split()) == CORE
    assert loaded == ""
