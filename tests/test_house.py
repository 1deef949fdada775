"""The house stays small-roomed: no import cycle in the package, its folders in layers (each imports only those
below it, none a folder that imports it back), no module past 400 lines, no function past 60 lines or 7
parameters (a parameter that packs values counts once per value: see :func:`parameter_count`), at most 8 modules
at the package's top (the rest in one folder per stage), a short README."""
import ast
import os

import pytest

from conftest import ROOT

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 7  # not counting a method's self or cls
MAX_TOP_MODULES = 8
MAX_README_CHARS = 20_000

# The package's layers, bottom first (docs/design.md, "The layers"): a folder (or top-level module) imports
# only those at or below it. Entry points sit above them all and nothing imports them: the package's
# __init__, the top-level command modules and every __main__ module (``python -m learngene_ea.transfer``).
LAYERS = ["errors", "_scoop_module_hook", "io", "core", "data", "config", "fewshot", "ea", "parallel", "reports",
          "transfer", "api", "cli"]
ENTRY_POINTS = {"__init__", "run", "study", "inspect", "examples", "__main__"}
NOT_FOR_EA = {"parallel", "reports", "transfer", "api", "cli"}  # the loop gets its engine and callbacks handed in


def modules(package):
    """``{dotted module name: file path}`` for every .py file of a top-level folder."""
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def imported_modules(name, path, known):
    """Package modules that module ``name`` imports anywhere in its file (inside functions too)."""
    is_package = path.endswith("__init__.py")
    targets = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")
                parent = parent if is_package else parent[:-1]
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:  # learngene_ea.x.func -> learngene_ea.x
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    # a package importing its own submodules, or a submodule its package, runs no cycle of code
    return {t for t in targets if not t.startswith(name + ".") and not name.startswith(t + ".")}


def import_cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or ``None``."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def package_graph():
    known = modules("learngene_ea")
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def layer_of(module: str) -> str:
    """``learngene_ea.ea.fitness`` -> ``ea``; a top-level module -> its name; the package, a ``__main__`` -> that."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return "__main__" if parts[-1] == "__main__" else parts[1]


def folder_edges(graph) -> dict:
    """``{(importing layer, imported layer): [importing modules]}`` between different layers."""
    edges = {}
    for module, targets in graph.items():
        for target in targets:
            pair = (layer_of(module), layer_of(target))
            if pair[0] != pair[1]:
                edges.setdefault(pair, []).append(module)
    return edges


def upward_imports(edges) -> list:
    """Imports of a layer above the importer, or of an entry point, by anything but an entry point."""
    found = []
    for (source, target), modules_ in sorted(edges.items()):
        if source in ENTRY_POINTS:
            continue
        if target in ENTRY_POINTS or LAYERS.index(target) > LAYERS.index(source):
            found.append((source, target, sorted(modules_)))
    return found


def mutual_imports(edges) -> list:
    """Pairs of layers that import each other."""
    return sorted({tuple(sorted(pair)) for pair in edges if pair[::-1] in edges})


def test_every_folder_and_top_module_has_a_place_in_the_layers():
    top = os.path.join(ROOT, "learngene_ea")
    names = {n[:-3] if n.endswith(".py") else n for n in os.listdir(top)
             if n.endswith(".py") or os.path.isfile(os.path.join(top, n, "__init__.py"))}
    assert names - set(LAYERS) - ENTRY_POINTS == set()


def test_no_folder_imports_a_folder_above_it():
    assert upward_imports(folder_edges(package_graph())) == []


def test_no_two_folders_import_each_other():
    assert mutual_imports(folder_edges(package_graph())) == []


def test_the_evolution_imports_no_engine_report_transfer_or_command_line():
    ea = {target for (source, target) in folder_edges(package_graph()) if source == "ea"}
    assert ea & NOT_FOR_EA == set()


def test_the_layer_rules_see_an_upward_and_a_mutual_import_inside_functions(tmp_path, monkeypatch):
    import conftest

    pkg = tmp_path / "learngene_ea"
    for folder in ("core", "ea", "parallel"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "net.py").write_text("def f():\n    from learngene_ea.ea import loop\n")
    (pkg / "ea" / "loop.py").write_text("from ..core.net import f\n\n\ndef g():\n    from ..parallel.pool import m\n")
    (pkg / "parallel" / "pool.py").write_text("from ..ea.loop import g\n")
    monkeypatch.setattr(conftest, "ROOT", str(tmp_path))
    monkeypatch.setitem(globals(), "ROOT", str(tmp_path))
    edges = folder_edges(package_graph())
    assert [(s, t) for s, t, _ in upward_imports(edges)] == [("core", "ea"), ("ea", "parallel")]
    assert mutual_imports(edges) == [("core", "ea"), ("ea", "parallel")]


def test_the_package_has_no_import_cycle():
    assert import_cycle(package_graph()) is None


def test_the_cycle_finder_finds_a_cycle_through_an_import_inside_a_function():
    graph = package_graph()
    graph["learngene_ea.io.atomic"] = graph["learngene_ea.io.atomic"] | {"learngene_ea.io.checkpoint"}
    cycle = import_cycle(graph)
    assert cycle[0] == cycle[-1] and {"learngene_ea.io.atomic", "learngene_ea.io.checkpoint"} <= set(cycle)
    known = modules("learngene_ea")
    assert "learngene_ea.io.atomic" in imported_modules("learngene_ea.core.learngene", known["learngene_ea.core.learngene"],
                                                     known)  # its import sits inside Learngene.save


@pytest.mark.parametrize("package", ["learngene_ea", "bench"])
def test_no_module_is_longer_than_400_lines(package):
    lengths = {name: sum(1 for _ in open(path, encoding="utf-8")) for name, path in modules(package).items()}
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}


def test_the_readme_is_a_guide_of_at_most_20000_characters():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert len(f.read()) <= MAX_README_CHARS


def tuple_length(annotation) -> int:
    """The values a fixed-length ``tuple[A, B]`` annotation (``Tuple``, quoted, in a union) says a parameter
    holds; 1 for any other annotation (``tuple[A, ...]`` and a bare ``tuple`` are sequences of any length)."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    if isinstance(annotation, ast.BinOp):  # A | B
        return max(tuple_length(annotation.left), tuple_length(annotation.right))
    if not isinstance(annotation, ast.Subscript):
        return 1
    outer = annotation.value
    outer = outer.attr if isinstance(outer, ast.Attribute) else getattr(outer, "id", "")
    inner = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
    if outer in ("Optional", "Union"):
        return max(tuple_length(element) for element in inner)
    if outer in ("tuple", "Tuple") and not any(isinstance(e, ast.Constant) and e.value is ... for e in inner):
        return len(inner)
    return 1


def values_taken_out(function, names) -> dict:
    """``{parameter: values}`` for the parameters ``function`` takes apart by position: the names it unpacks one
    into (``a, b = p``, ``(a, b), c = p, q``), or the distinct constant indexes it reads (``p[0]``, ``p[1]``)."""
    taken, indexes = {}, {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                value, pairs = node.value, [(target, node.value)]
                both = isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
                if both and len(target.elts) == len(value.elts):
                    pairs = list(zip(target.elts, value.elts))  # (a, b), c = p, q
                for unpacked, source in pairs:
                    if isinstance(unpacked, (ast.Tuple, ast.List)) and getattr(source, "id", None) in names:
                        taken[source.id] = max(taken.get(source.id, 1), len(unpacked.elts))
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in names
              and isinstance(node.slice, ast.Constant) and type(node.slice.value) is int):
            indexes.setdefault(node.value.id, set()).add(node.slice.value)
    for name, seen in indexes.items():
        taken[name] = max(taken.get(name, 1), len(seen))
    return taken


def parameter_count(function) -> int:
    """A function's parameters (not a method's ``self`` or ``cls``), each counted once per value it carries: a
    parameter annotated ``tuple[A, B]``, unpacked into two names or read at two constant indexes counts 2. So
    the 7-parameter rule is not met by packing arguments into a tuple (give them a purpose-built object
    with named fields instead); ``*args`` counts the same way, a ``**kwargs`` once."""
    args = function.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs, *([args.vararg] if args.vararg else [])]
    if params and params[0].arg in ("self", "cls"):
        params = params[1:]
    taken = values_taken_out(function, {p.arg for p in params})
    return sum(max(tuple_length(p.annotation), taken.get(p.arg, 1)) for p in params) + bool(args.kwarg)


def functions(package):
    """``(where, name, lines, parameters)`` of every function and method of a top-level folder."""
    found = []
    for dotted, path in modules(package).items():
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((f"{dotted}:{node.lineno}", node.name, node.end_lineno - node.lineno + 1,
                              parameter_count(node)))
    return found


def test_no_function_is_longer_than_60_lines():
    assert [(where, name, n) for where, name, n, _ in functions("learngene_ea") if n > MAX_FUNCTION_LINES] == []


def test_no_function_takes_more_than_7_parameters():
    assert [(where, name, p) for where, name, _, p in functions("learngene_ea") if p > MAX_PARAMETERS] == []


def test_the_function_rules_see_a_long_and_a_wide_function(tmp_path, monkeypatch):
    import conftest

    folder = tmp_path / "pkg"
    folder.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (folder / "mod.py").write_text(f"def wide(a, b, c, d, e, f, g, *h):\n    pass\n\n\ndef long():\n{body}\n"
                                   "\n\nclass C:\n    def method(self, a, b, c, d, e, f, g):\n        pass\n")
    monkeypatch.setattr(conftest, "ROOT", str(tmp_path))
    monkeypatch.setitem(globals(), "ROOT", str(tmp_path))
    found = {name: (n, p) for _, name, n, p in functions("pkg")}
    assert found["wide"][1] == 8 and found["long"][0] == 61 and found["method"][1] == 7


def test_at_most_8_modules_sit_at_the_top_of_the_package():
    top = sorted(n for n in os.listdir(os.path.join(ROOT, "learngene_ea")) if n.endswith(".py"))
    assert len(top) <= MAX_TOP_MODULES, top


@pytest.mark.parametrize("source,count", [
    ("def f(a, b, c, d, e, f, g): pass", 7),
    ("def f(a, b, c, d, e, folders: tuple[str, str], g): pass", 8),  # a pair, said by its annotation
    ("def f(a, b, c, d, e, f, folders: 'tuple[str, str] | None' = None): pass", 8),
    ("def f(a, b, c, d, e, f, steps):\n    return steps[0] + steps[1]", 8),  # read at two positions
    ("def f(a, b, c, d, e, f, where):\n    dataset, device, start = where", 9),  # unpacked into three
    ("def f(a, b, c, d, trained, where):\n    (model, loss), (dataset, device, start) = trained, where", 9),
    ("def f(a, b, c, d, e, f, *args):\n    x, y = args", 8),
    ("class C:\n    def m(self, a, b, c, d, e, f, g): pass", 7),
    # a sequence of any length, a collection of pairs, a named record: one value each
    ("def f(a, b, c, d, e, f, parents: tuple[int, ...]):\n    first = parents[0]", 7),
    ("def f(a, b, c, d, e, f, pairs: list[tuple[int, int]], g: tuple = ()): pass", 8),
    ("def f(a, b, c, d, e, f, where: Where):\n    dataset, device = where.dataset, where.device", 7),
])
def test_a_parameter_counts_once_per_value_it_packs(source, count):
    """The 7-parameter rule is not met by packing arguments into a tuple: a parameter annotated as a fixed-length
    tuple, unpacked, or read at several constant positions counts once per value."""
    node = ast.parse(source).body[0]
    function = node.body[0] if isinstance(node, ast.ClassDef) else node
    assert parameter_count(function) == count
