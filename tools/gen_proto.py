"""Regenerates the Python code for proto/ into cairn/ (the one package that both
services and worker_sdk import). With --check, fails when the checked-in code is
stale instead of writing it."""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "cairn"
PACKAGES = ["cairn/v1", "cairn/internal/v1"]


def generate(out: Path) -> None:
    """Runs protoc for every .proto file under proto/ into out."""
    import grpc_tools
    from grpc_tools import protoc

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    for pkg in ["cairn/internal", *PACKAGES]:
        (out / pkg / "__init__.py").touch()


def generated_files(base: Path) -> set[str]:
    return {str(p.relative_to(base)) for pkg in PACKAGES for p in (base / pkg).glob("*") if p.is_file()} | {
        "cairn/internal/__init__.py"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when cairn/ is stale")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = generated_files(Path(tmp))
        if check:
            current = {f for f in generated_files(ROOT) if "__pycache__" not in f}
            stale = sorted(
                f
                for f in fresh | current
                if f not in fresh
                or f not in current
                or not filecmp.cmp(Path(tmp) / f, ROOT / f, shallow=False)
            )
            if stale:
                sys.exit(
                    "generated protobuf code is stale; run `python tools/gen_proto.py`: " + ", ".join(stale)
                )
            print(f"generated protobuf code is up to date ({len(fresh)} files)")
            return
        for pkg in PACKAGES:
            shutil.rmtree(ROOT / pkg, ignore_errors=True)
        for f in fresh:
            (ROOT / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / f, ROOT / f)
        print(f"wrote {len(fresh)} files under {OUT}")


if __name__ == "__main__":
    main()
