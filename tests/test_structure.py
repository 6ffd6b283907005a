"""The package's rooms and the arrows between them: no import cycle at all, between modules or rooms (model, data,
train, evaluate, export, detect, cli), and nothing that tests, predicts, exports or detects imports the training
engine. Every import counts, the ones inside functions too: a lazy import hides a cycle, it does not remove it.
Only `if TYPE_CHECKING:` blocks are left out (they never run)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "googlenet"

# The test-time paths: `evaluate`, `predict`, `export`, `detect predict` / `detect evaluate` and what they use.
TEST_TIME = [
    "googlenet.evaluate.multicrop",
    "googlenet.evaluate.table3",
    "googlenet.evaluate.driver",
    "googlenet.export",
    "googlenet.model.loading",
    "googlenet.detect.detector",
    "googlenet.detect.proposals",
    "googlenet.detect.regions",
    "googlenet.cli.testing",
    "googlenet.cli.model",
]


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports():
    """{module: the googlenet modules it imports}, from the source (`from x import y` counts x, and x.y where
    that is a module), outside `if TYPE_CHECKING:` blocks."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        found = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("googlenet")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("googlenet"):
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _room(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "googlenet"


def _reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _cycles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_cycle_between_modules():
    """Module by module, lazy imports included: a cycle inside a room is a tangle too."""
    assert _cycles(_imports()) == []


def test_the_cycle_finder_finds_a_cycle():
    """A check of the checker: a -> b -> c -> a is found, d (which only points into it) is not part of it."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_rooms():
    graph = _imports()
    rooms = {}
    for module, imported in graph.items():
        rooms.setdefault(_room(module), set()).update(_room(m) for m in imported if _room(m) != _room(module))
    cycles = [
        (a, b) for a in rooms for b in rooms[a] if a in _reachable(rooms, b) and a != "googlenet" and b != "googlenet"
    ]
    assert not cycles, f"rooms that import each other (directly or through others): {sorted(cycles)}"


@pytest.mark.parametrize("start", TEST_TIME)
def test_test_time_paths_do_not_import_the_training_engine(start):
    graph = _imports()
    assert start in graph
    training = sorted(m for m in _reachable(graph, start) if _room(m) == "train")
    assert not training, f"{start} reaches {training}"


def test_the_walk_sees_lazy_imports():
    """A check of the checker: the CLI imports the training loop only inside its functions."""
    assert "googlenet.train.loop" in _imports()["googlenet.cli.training"]


def test_every_module_says_what_it_owns():
    """Each module opens with a docstring whose first line says what it owns."""
    missing = [p.name for p in PACKAGE.rglob("*.py") if not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()]
    assert not missing, f"modules without a docstring: {missing}"


# Declarative tables, longer than a function should be because each line is a row: Table 1's rows, an argument list.
LONG_TABLES = {("model/googlenet.py", "__init__"), ("cli/testing.py", "add_evaluate")}


def test_no_function_over_60_lines():
    long = [
        (str(p.relative_to(PACKAGE)), node.name, node.end_lineno - node.lineno + 1)
        for p in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert [f for f in long if f[:2] not in LONG_TABLES] == []


def test_the_public_names_are_the_lazy_ones():
    """googlenet's __all__ and the names it imports when first used are the same, and each one resolves."""
    import googlenet

    assert set(googlenet.__all__) - {"__version__"} == set(googlenet._PUBLIC)
    assert all(getattr(googlenet, name) is not None for name in googlenet.__all__)
