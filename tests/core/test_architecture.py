"""Architecture rules of the package, checked on its source with :mod:`ast`.

1. No import cycle among the modules of ``residency_sdk``: every module's dependencies
   run one way. Imports inside functions count (a lazy import is still a dependency);
   imports under ``if TYPE_CHECKING:`` do not (they never run).
2. The sweeps and tenant erasure (``erasure/``, ``retention.py``, ``sweep.py``) speak
   no cloud API: they import no cloud SDK and no cloud adapter, name no S3/GCS/Azure API,
   and do not probe stores with ``getattr``; what only a provider can answer is asked
   through the neutral :class:`~residency_sdk.storage.base.ObjectStore` methods.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "residency_sdk"
PACKAGE_DIR = ROOT / PACKAGE


# --- the import graph ------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Edge:
    """``src`` imports ``dst`` at ``line`` of ``src``'s file."""

    src: str
    dst: str
    line: int


def module_files(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package by dotted name; a package is its ``__init__.py``."""
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """True for ``TYPE_CHECKING`` and ``typing.TYPE_CHECKING`` (an ``if`` that never runs)."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING" \
        and isinstance(test.value, ast.Name) and test.value.id == "typing"


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` that can run: all of it except the bodies of
    ``if TYPE_CHECKING:`` blocks (their ``else:`` branch runs, so it is kept)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(reversed(node.orelse))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _import_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imported_modules(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for each package module ``module`` imports explicitly.

    ``import a.b.c`` names ``a.b.c`` only: the parent packages Python runs first
    (``a/__init__.py``, ``a/b/__init__.py``) are not counted, or every module would sit
    in one cycle with the package's ``__init__``. ``from a.b import c`` names ``a.b.c``
    when that is a module (file or package), else ``a.b`` (a name defined there).
    ``importlib.import_module("a.b")`` with a literal name counts as ``import a.b``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _import_base(module, is_package, node)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in known:
                    yield candidate, node.lineno
                elif base in known:
                    yield base, node.lineno
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                    and arg.value in known:
                yield arg.value, node.lineno


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module"
            and isinstance(func.value, ast.Name) and func.value.id == "importlib") \
        or (isinstance(func, ast.Name) and func.id in {"import_module", "__import__"})


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, list[Edge]]:
    """Module -> its import edges to other modules of the package (self-imports dropped)."""
    files = module_files(package_dir)
    known = set(files)
    graph: dict[str, list[Edge]] = {m: [] for m in files}
    for module, path in files.items():
        graph[module] = sorted({Edge(module, dst, line)
                                for dst, line in imported_modules(module, path, known)
                                if dst != module})
    return graph


def strongly_connected_components(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit): the components, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, iter(sorted({e.dst for e in graph[root]}))))
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted({e.dst for e in graph.get(succ, [])}))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def shortest_cycle(graph: dict[str, list[Edge]], members: set[str], start: str) -> list[str]:
    """A shortest cycle through ``start`` inside one component (breadth-first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for dst in sorted({e.dst for e in graph[node]} & members):
                if dst == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if dst not in previous:
                    previous[dst] = node
                    nxt.append(dst)
        frontier = nxt
    return [start]


def describe_cycle(graph: dict[str, list[Edge]], component: list[str],
                   files: dict[str, Path]) -> str:
    """A component as text: one shortest cycle, then every edge inside it with its lines."""
    members = set(component)
    cycle = shortest_cycle(graph, members, component[0])
    lines = [f"cycle among {len(component)} modules: {' -> '.join(cycle)}"]
    for module in component:
        by_dst: dict[str, list[int]] = {}
        for edge in graph[module]:
            if edge.dst in members:
                by_dst.setdefault(edge.dst, []).append(edge.line)
        rel = files[module].relative_to(ROOT)
        for dst, where in sorted(by_dst.items()):
            lines.append(f"    {module} -> {dst}  ({rel}:{','.join(map(str, where))})")
    return "\n".join(lines)


def test_no_import_cycle_among_package_modules() -> None:
    files = module_files()
    graph = import_graph()
    assert "residency_sdk.audit.verify" in graph, "the package layout was not found"
    cycles = [c for c in strongly_connected_components(graph) if len(c) > 1]
    report = "\n\n".join(describe_cycle(graph, c, files) for c in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s) in {PACKAGE}:\n\n{report}"


def test_import_graph_helpers_on_a_small_package(tmp_path: Path) -> None:
    """The graph builder itself: relative, lazy, TYPE_CHECKING and package imports."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "from pkg.a import A\n",
        "a.py": ("from typing import TYPE_CHECKING\nimport typing\nA = 1\n"
                 "if TYPE_CHECKING:\n    from pkg import b\n"
                 "if typing.TYPE_CHECKING:\n    import pkg.c\nelse:\n    import pkg.sub\n"
                 "def f():\n    from . import b\n"),
        "b.py": "from .sub import mod\nfrom .sub.mod import X\n",
        "c.py": "import pkg.sub.mod\nimport importlib\nimportlib.import_module('pkg.a')\n",
        "sub/__init__.py": "from ..c import Y\n",
        "sub/mod.py": "X = 1\nfrom pkg import A\n",
    }
    for name, text in sources.items():
        (pkg / name).write_text(text)
    graph = import_graph(pkg)
    edges = {m: sorted({e.dst for e in es}) for m, es in graph.items()}
    assert edges == {
        "pkg": ["pkg.a"],
        "pkg.a": ["pkg.b", "pkg.sub"],  # TYPE_CHECKING skipped, its else and lazy kept
        "pkg.b": ["pkg.sub.mod"],
        "pkg.c": ["pkg.a", "pkg.sub.mod"],  # no implicit edge to pkg or pkg.sub
        "pkg.sub": ["pkg.c"],
        "pkg.sub.mod": ["pkg"],  # `from pkg import A`: A is no module, so pkg itself
    }
    components = [c for c in strongly_connected_components(graph) if len(c) > 1]
    assert components == [["pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.sub", "pkg.sub.mod"]]
    assert shortest_cycle(graph, set(components[0]), "pkg") == \
        ["pkg", "pkg.a", "pkg.b", "pkg.sub.mod", "pkg"]


# --- sweeps and erasure speak no cloud API ---------------------------------------------

PROVIDER_NEUTRAL_MODULES = ("erasure", "retention.py", "sweep.py")
"""Modules, and packages (every module in them), of the package's folder."""

CLOUD_SDKS = frozenset({"boto3", "botocore", "s3transfer", "aioboto3", "aiobotocore",
                        "awscrt", "mypy_boto3_s3", "google", "azure", "s3fs", "gcsfs",
                        "adlfs"})
"""Top-level packages of cloud SDKs (``google.*`` and ``azure.*`` entirely)."""
CLOUD_ADAPTERS = frozenset({f"{PACKAGE}.storage.s3", f"{PACKAGE}.storage.gcs",
                            f"{PACKAGE}.storage.azure"})

CLOUD_API_NAMES = frozenset({
    # S3 (boto3 client methods, parameters, errors)
    "list_object_versions", "list_objects", "list_objects_v2", "list_multipart_uploads",
    "abort_multipart_upload", "create_multipart_upload", "complete_multipart_upload",
    "upload_part", "list_parts", "head_object", "get_object", "put_object", "delete_object",
    "delete_objects", "copy_object", "get_paginator", "get_object_retention",
    "put_object_retention", "get_object_legal_hold", "put_object_legal_hold",
    "get_object_lock_configuration", "put_object_lock_configuration", "head_bucket",
    "get_bucket_versioning", "get_bucket_location", "get_bucket_encryption",
    "get_public_access_block", "get_bucket_lifecycle_configuration", "generate_presigned_url",
    "VersionId", "UploadId", "DeleteMarkers", "BypassGovernanceRetention", "ClientError",
    "NoSuchKey", "NoSuchBucket", "NoSuchUpload", "s3_client", "S3Store",
    # GCS (google-cloud-storage)
    "get_bucket", "lookup_bucket", "list_blobs", "get_blob", "if_generation_match",
    "temporary_hold", "event_based_hold", "retention_expiration_time", "GCSStore",
    # Azure (azure-storage-blob)
    "blob_service", "blob_service_client", "BlobServiceClient", "ContainerClient",
    "BlobClient", "container_client", "get_container_client", "get_blob_client",
    "list_blob_names", "walk_blobs", "delete_blob", "undelete_blob", "set_legal_hold",
    "set_immutability_policy", "delete_immutability_policy", "immutability_policy",
    "has_legal_hold", "ResourceNotFoundError", "HttpResponseError", "AzureStore",
})
"""Names of provider APIs: banned as identifiers, attributes, calls, keyword arguments,
definitions and as whole string literals."""
CLOUD_API_PREFIXES = ("ObjectLock",)
"""``ObjectLockMode``, ``ObjectLockRetainUntilDate``, ``ObjectLockLegalHoldStatus``, ..."""
CLOUD_ATTRIBUTES = frozenset({"client", "Client"})
"""Banned as attributes and whole string literals only (``store.client``,
``getattr(store, "client")``, ``storage.Client``): common words as plain names."""
S3_KEYS = frozenset({"Bucket", "Key", "Prefix", "Versions", "Uploads", "Contents",
                     "IsTruncated", "KeyMarker", "VersionIdMarker", "NextKeyMarker",
                     "NextVersionIdMarker", "ContinuationToken", "NextContinuationToken",
                     "LegalHold", "RetainUntilDate", "ResponseMetadata", "HTTPStatusCode"})
"""S3 request parameters and response keys: banned as keyword arguments and whole string
literals (``paginate(Bucket=...)``, ``page["Versions"]``)."""


def _cloud_api(name: str) -> bool:
    return name in CLOUD_API_NAMES or name.startswith(CLOUD_API_PREFIXES)


def cloud_api_uses(path: Path, root: Path = ROOT) -> list[str]:
    """Every place in the module at ``path`` (a module of the package) that speaks a
    cloud API, as ``file:line: what`` (``file`` relative to ``root``).

    Imports are checked everywhere, ``TYPE_CHECKING`` blocks included: a type from a cloud
    SDK is already provider-specific code.
    """
    rel = path.relative_to(root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = ".".join(rel.with_suffix("").parts)
    found: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{rel}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = _import_base(module, False, node)
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in CLOUD_SDKS:
                    flag(node, f"imports cloud SDK {name}")
                elif name in CLOUD_ADAPTERS:
                    flag(node, f"imports cloud adapter {name}")
        elif isinstance(node, ast.Name) and _cloud_api(node.id):
            flag(node, f"names cloud API {node.id}")
        elif isinstance(node, ast.Attribute) and (_cloud_api(node.attr)
                                                  or node.attr in CLOUD_ATTRIBUTES):
            flag(node, f"uses cloud API attribute .{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg is not None \
                and (_cloud_api(node.arg) or node.arg in S3_KEYS):
            flag(node, f"passes cloud API parameter {node.arg}=")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) \
                and _cloud_api(node.name):
            flag(node, f"defines cloud API name {node.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and (_cloud_api(node.value) or node.value in CLOUD_ATTRIBUTES
                     or node.value in S3_KEYS):
            flag(node, f"string names cloud API {node.value!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in {"getattr", "hasattr"} and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str):
            flag(node, f"probes for a capability with {node.func.id}(..., "
                       f"{node.args[1].value!r})")
    return sorted(set(found), key=lambda s: (s.split(":")[0], int(s.split(":")[1]), s))


_LOADED_CLOUD_SDKS = """
import json, sys
import residency_sdk.erasure, residency_sdk.retention, residency_sdk.sweep
roots = ("boto3", "botocore", "s3transfer", "awscrt", "google.cloud", "google.api_core",
         "google.auth", "google.resumable_media", "azure")
print(json.dumps(sorted(m for m in sys.modules
                        if any(m == r or m.startswith(r + ".") for r in roots))))
"""


def cloud_modules_loaded_by_import() -> tuple[list[str], str | None]:
    """Cloud SDK modules in ``sys.modules`` after a fresh interpreter imports the sweeps
    and erasure; the error text instead when the import fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", _LOADED_CLOUD_SDKS], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=120, check=False)
    if out.returncode != 0:
        return [], out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded, None


def test_sweeps_and_erasure_speak_no_cloud_api() -> None:
    problems: list[str] = []
    for name in PROVIDER_NEUTRAL_MODULES:
        path = PACKAGE_DIR / name
        if not path.exists():
            problems.append(f"{PACKAGE}/{name}: missing (the provider-neutral sweep module "
                            "must exist)")
            continue
        for module in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            problems += cloud_api_uses(module)
    loaded, error = cloud_modules_loaded_by_import()
    if error is not None:
        problems.append(f"importing the sweeps and erasure failed: {error}")
    elif loaded:
        problems.append("importing the sweeps and erasure loads cloud SDK modules: "
                        + ", ".join(loaded[:10]) + (" ..." if len(loaded) > 10 else ""))
    assert not problems, (f"{len(problems)} cloud API use(s) in the sweeps and erasure:\n"
                          + "\n".join(problems))


def test_cloud_api_detector_on_a_sample(tmp_path: Path) -> None:
    """The detector flags S3 code and leaves provider-neutral code alone."""
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    sample = pkg / "sample.py"
    sample.write_text(
        "from residency_sdk.storage import s3\nimport botocore.exceptions\n"
        "def purge(store, prefix, info, now):\n"
        "    client = getattr(store, 'client', None)\n"
        "    for page in client.get_paginator('list_object_versions').paginate(\n"
        "            Bucket=store.target.bucket, Prefix=prefix):\n"
        "        for v in page.get('Versions', []):\n"
        "            client.delete_object(Key=v['Key'], VersionId=v['VersionId'])\n"
        "    if head['ObjectLockMode']: pass\n"
        "    residue = store.purge_residue(prefix, keep=frozenset())\n"
        "    return store.hold_reason(info, now), residue.versions_deleted\n")
    found = cloud_api_uses(sample, root=tmp_path)
    text = "\n".join(found)
    for expected in ("1: imports cloud adapter residency_sdk.storage.s3",
                     "2: imports cloud SDK botocore.exceptions",
                     "4: probes for a capability with getattr(..., 'client')",
                     "4: string names cloud API 'client'",
                     "5: uses cloud API attribute .get_paginator",
                     "5: string names cloud API 'list_object_versions'",
                     "6: passes cloud API parameter Bucket=",
                     "7: string names cloud API 'Versions'",
                     "8: uses cloud API attribute .delete_object",
                     "8: passes cloud API parameter VersionId=",
                     "8: string names cloud API 'Key'",
                     "9: string names cloud API 'ObjectLockMode'"):
        assert f"sample.py:{expected}" in text, text
    assert not [f for f in found if ":10:" in f or ":11:" in f], text
