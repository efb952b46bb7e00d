"""The package's import structure (DESIGN.md, "Layout"): arrows point down only, no circles, and the light entry
points stay light.

Layers, top to bottom: ``cli`` / ``app`` / ``api`` → ``engine`` / ``deploy`` / ``predict`` / ``track`` → ``tasks`` →
``models``. ``data`` sits beside them: used by engine, deploy and predict (and track), never by models or tasks; it
reads only the task registry's plain values (``tasks.registry``). ``deploy`` never imports engine or predict. Every
import counts for these rules, module-level and inside functions; circles are looked for among module-level
imports (what runs at import time).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ghostkit"

TOP = {"cli", "app", "api", "__init__"}
MIDDLE = {"engine", "deploy", "predict", "track"}
# layer → the layers it may import (besides itself, ``errors`` and ``io``, the atomic writer, which everyone may import)
BASE = {"errors", "io"}
ALLOWED = {
    "models": set(),
    "tasks": {"models"},
    "data": set(),  # plus tasks.registry, below
    "engine": {"deploy", "predict", "track", "tasks", "models", "data"},
    "deploy": {"tasks", "models", "data"},
    "predict": {"engine", "deploy", "track", "tasks", "models", "data"},
    "track": {"engine", "deploy", "predict", "tasks", "models", "data"},
    **{top: TOP | MIDDLE | {"tasks", "models", "data"} for top in TOP},
    "errors": set(),
    "io": set(),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """``[(imported ghostkit module, at module level)]`` of one file (``TYPE_CHECKING`` blocks left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names if a.name.startswith("ghostkit"))
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, _is_package(path), child)
                if target.startswith("ghostkit"):
                    for a in child.names:  # ``from pkg import submodule`` imports the submodule
                        sub = f"{target}.{a.name}"
                        found.append((sub if sub in known else target, inner))
            visit(child, inner)

    visit(tree, True)
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, list[tuple[str, bool]]]:
    modules = _modules()
    known = set(modules)
    return {m: [(t, top) for t, top in _imports(m, p, known) if t in known and t != m] for m, p in modules.items()}


def test_the_walk_sees_the_package():
    graph = _graph()
    assert {"ghostkit.tasks.registry", "ghostkit.deploy.export", "ghostkit.engine.run", "ghostkit.cli"} <= set(graph)
    # a function-level import is seen, and known as one
    assert ("ghostkit.engine.module", False) in graph["ghostkit.engine.run"]
    assert ("ghostkit.tasks.registry", True) in graph["ghostkit.engine.spec"]


def test_arrows_point_down():
    bad = []
    for module, targets in _graph().items():
        layer = _layer(module)
        for target, _ in targets:
            other = _layer(target)
            if other == layer or other in BASE or other in ALLOWED[layer]:
                continue
            if layer == "data" and target == "ghostkit.tasks.registry":
                continue
            bad.append(f"{module} -> {target}")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(set(bad)))


def test_deploy_imports_no_engine_and_no_predict():
    bad = [f"{m} -> {t}" for m, targets in _graph().items() if _layer(m) == "deploy"
           for t, _ in targets if _layer(t) in ("engine", "predict")]
    assert not bad, bad


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, []):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_no_import_circles():
    graph = {m: sorted({t for t, top in targets if top}) for m, targets in _graph().items()}
    assert _cycles(graph) == []


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_import_ghostkit_loads_neither_lightning_nor_torch():
    out = _run("import sys, ghostkit; ghostkit.GhostkitError; "
               "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torch')))")
    assert out.strip() == "[]"


def test_cli_help_loads_no_torch():
    """``ghostkit --help``, ``ghostkit train --help`` and an unknown command answer without torch (asserted on the
    modules loaded, not on seconds: the start-up time follows from it)."""
    out = _run("import sys\nfrom ghostkit.cli import main\n"
               "codes = [main(['--help']), main(['train', '--help']), main(['export', '--help']), main(['nonsense'])]\n"
               "print('CODES', codes, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning')))")
    line = next(x for x in out.splitlines() if x.startswith("CODES"))
    assert line == "CODES [0, 0, 0, 2] []"


@pytest.mark.slow
def test_export_int8_and_predict_load_no_lightning(tmp_path):
    """Export (ONNX and INT8 with its accuracy check), loading the export and predicting never import Lightning."""
    code = f"""
import sys
from pathlib import Path
import numpy as np
import ghostkit
from ghostkit.tasks.model import build_task_model
config = {{"format": 1, "backbone": {{"name": "ghostnet_050", "kwargs": {{}}}},
          "heads": {{"classify": {{"num_classes": 10}}}}, "class_names": {{"classify": [str(i) for i in range(10)]}},
          "imgsz": [32, 32], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "deployed": False}}
model = build_task_model(config).eval()
out = Path({str(tmp_path)!r})
ghostkit.export(model, out=out / "m.onnx", log=None)
ghostkit.export(model, out=out / "m.int8.onnx", int8=True, data="digits", log=None)
image = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
for path in ("m.onnx", "m.int8.onnx"):
    assert len(ghostkit.load_model(out / path).predict([image])) == 1
print("LIGHTNING", sorted(m for m in sys.modules if m.split('.')[0] == 'lightning'))
"""
    out = _run(code)
    assert "LIGHTNING []" in out


def test_no_source_file_over_450_lines():
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    long = {p.relative_to(ROOT).as_posix(): n for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert not long, long
