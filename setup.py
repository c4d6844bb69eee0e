"""Build hook: ship the repo-root weights_manifest.json inside the wheel.

The manifest lives at the repository root as the single source of truth (people review and
edit it there); the installed package reads its copy at sr_cli/weights/weights_manifest.json.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MANIFEST = "weights_manifest.json"


class BuildPyWithManifest(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / MANIFEST
        target = Path(self.build_lib) / "sr_cli" / "weights" / MANIFEST
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


setup(cmdclass={"build_py": BuildPyWithManifest})
