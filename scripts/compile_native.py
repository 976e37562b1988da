"""Compile the hot-path modules (``gateway.native.COMPILED``) with mypyc, in place.

Run by ``make install`` (and the Docker image's build stage): each module's C extension lands
beside its source, with the runtime they share (``gateway/_native__mypyc.*.so``) and the
digests of the sources built (``gateway/native.json``). Needs a C compiler and the Python
headers. ``--clean`` removes what a build left, so the sources run as they are.

Usage: ``python scripts/compile_native.py [--clean | --sources]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))

from gateway.native import COMPILED, DIGESTS, PACKAGE_DIR, source_digest, source_path  # noqa: E402

#: The name of the shared runtime extension: ``gateway._native__mypyc``, inside the package,
#: so a wheel or an image that copies the package takes it along.
GROUP = "gateway._native"


def clean() -> None:
    """Remove every extension and digest file a build left."""
    built = [*PACKAGE_DIR.glob("_native__mypyc.*")]
    for module in COMPILED:
        source = source_path(module)
        built += source.parent.glob(f"{source.stem}.*.so")
    for path in built:
        path.unlink()
    DIGESTS.unlink(missing_ok=True)


def build() -> None:
    from mypyc.build import mypycify  # build-time only: mypy (and mypyc) is a dev dependency
    from setuptools import setup

    clean()
    sources = [str(source_path(module).relative_to(SRC)) for module in COMPILED]
    with tempfile.TemporaryDirectory() as scratch:
        # From src/, so extensions land beside their sources and no pyproject.toml is read as
        # this build's metadata.
        os.chdir(SRC)
        setup(
            name="gateway-native",
            ext_modules=mypycify(sources, group_name=GROUP, target_dir=f"{scratch}/c"),
            script_args=[
                "--quiet",
                "build_ext",
                "--inplace",
                f"--build-temp={scratch}/o",
                f"--build-lib={scratch}/lib",
            ],
        )
    DIGESTS.write_text(json.dumps({module: source_digest(module) for module in COMPILED}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the built extensions")
    parser.add_argument("--sources", action="store_true", help="list the compiled sources")
    options = parser.parse_args()
    if options.sources:
        print(" ".join(str(source_path(module).relative_to(SRC.parent)) for module in COMPILED))
    elif options.clean:
        clean()
    else:
        build()


if __name__ == "__main__":
    main()
