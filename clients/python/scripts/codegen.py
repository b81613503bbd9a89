"""Regenerate the client with ariadne-codegen, or check that it is current.

    python3 clients/python/scripts/codegen.py           # rewrite src/ctxgraph_client/
    python3 clients/python/scripts/codegen.py --check   # exit 1 if it is stale

ariadne-codegen pins graphql-core<3.3 and ruff<0.16, which clash with the
server's own dependencies, so it runs from a virtualenv of its own
(clients/python/.venv, made on first use; CODEGEN_PYTHON overrides it).
The inputs are the committed schema.graphql and the operations shared with
the TypeScript client (clients/typescript/operations/*.graphql).
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
PACKAGE = HERE / "src" / "ctxgraph_client"
GENERATOR = "ariadne-codegen==0.19.0"
KEEP = {"py.typed"}  # committed beside the generated modules


def codegen_python() -> Path:
    override = os.environ.get("CODEGEN_PYTHON")
    if override:
        return Path(override)
    venv = HERE / ".venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run(
        [str(python), "-c", "import ariadne_codegen"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", GENERATOR], check=True)
    return python


def generate(into: Path) -> None:
    """Generate the package into `into`/ctxgraph_client with the settings of pyproject.toml."""
    config = tomllib.loads((HERE / "pyproject.toml").read_text())["tool"]["ariadne-codegen"]
    lines = ["[tool.ariadne-codegen]"]
    for key, value in config.items():
        if key == "scalars":
            continue
        if key == "target_package_path":
            value = str(into)
        lines.append(f"{key} = {toml_value(value)}")
    for name, scalar in config.get("scalars", {}).items():
        lines.append(f"[tool.ariadne-codegen.scalars.{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in scalar.items())
    toml = into / "codegen.toml"
    toml.write_text("\n".join(lines) + "\n")
    subprocess.run(
        [str(codegen_python()), "-m", "ariadne_codegen", "--config", str(toml)],
        cwd=HERE,  # schema_path and queries_path are relative to here, as in the comments
        check=True,
        stdout=subprocess.DEVNULL,
    )


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def modules(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.glob("*.py")) if p.name not in KEEP}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the package is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = modules(Path(tmp) / "ctxgraph_client")
        current = modules(PACKAGE)
        if args.check:
            stale = sorted(set(fresh) ^ set(current)) + sorted(
                n for n in set(fresh) & set(current) if fresh[n] != current[n]
            )
            for name in stale:
                sys.stdout.writelines(
                    difflib.unified_diff(
                        current.get(name, "").splitlines(keepends=True),
                        fresh.get(name, "").splitlines(keepends=True),
                        f"committed/{name}",
                        f"generated/{name}",
                    )
                )
            if stale:
                print(
                    f"clients/python: {len(stale)} generated file(s) are stale: "
                    "run python3 clients/python/scripts/codegen.py",
                    file=sys.stderr,
                )
                return 1
            print(f"clients/python: {len(fresh)} generated files are current", file=sys.stderr)
            return 0
        for name in set(current) - set(fresh):
            (PACKAGE / name).unlink()
        for name, text in fresh.items():
            (PACKAGE / name).write_text(text)
        print(f"clients/python: wrote {len(fresh)} files to {PACKAGE}", file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main())
