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
from typing import Any

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))

from gateway.native import COMPILED, DIGESTS, PACKAGE_DIR, source_digest, source_path  # noqa: E402

#: The name of the shared runtime extension: ``gateway._native__mypyc``, inside the package,
#: so a wheel or an image that copies the package takes it along.
GROUP = "gateway._native"


def clean() -> None:
    """Remove every extension and digest file a build left.

    Every extension in the package is a build's (the gateway has no other C code), including
    those of modules no longer in ``COMPILED``, which would otherwise shadow their sources.
    """
    for path in PACKAGE_DIR.rglob("*.so"):
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
        # One C file per module (multi_file), compiled side by side: a single file of every
        # module takes gcc minutes on one core.
        extensions = mypycify(sources, group_name=GROUP, target_dir=f"{scratch}/c", multi_file=True)
        for extension in extensions:
            # mypyc writes the group's headers under the group's package (gateway/) but
            # includes them by bare name.
            extension.include_dirs.append(f"{scratch}/c/{GROUP.rpartition('.')[0]}")
        setup(
            name="gateway-native",
            ext_modules=extensions,
            cmdclass={"build_ext": _parallel_build_ext()},
            script_args=[
                "--quiet",
                "build_ext",
                "--inplace",
                f"--build-temp={scratch}/o",
                f"--build-lib={scratch}/lib",
            ],
        )
    DIGESTS.write_text(json.dumps({module: source_digest(module) for module in COMPILED}, indent=1))


def _parallel_build_ext() -> type:
    """setuptools' ``build_ext``, compiling each extension's C files one process per core.

    setuptools runs gcc on an extension's files one after another; mypyc's shared runtime is
    one extension of many files, the build's long pole.
    """
    from concurrent.futures import ThreadPoolExecutor

    from setuptools.command.build_ext import build_ext

    class ParallelBuildExt(build_ext):  # type: ignore[misc]  # setuptools is untyped here
        def build_extensions(self) -> None:
            compile_one_by_one = self.compiler.compile

            def compile_side_by_side(sources: list[str], **options: Any) -> list[str]:
                with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
                    done = pool.map(lambda source: compile_one_by_one([source], **options), sources)
                    return [obj for objects in done for obj in objects]

            self.compiler.compile = compile_side_by_side
            super().build_extensions()

    return ParallelBuildExt


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
