"""Build step that pyproject.toml cannot say: a wheel carries the device files.

``synack deploy`` puts firmware/synack on a board and ``synack hil`` runs hil_tests/; both
live beside the host package in a checkout. A wheel copies them into the package as
``synack_host/_bundled/{firmware,hil_tests}``, where ``synack_host.packaging`` looks
first. An editable install (``pip install -e .``) copies nothing and keeps using the
checkout's files, so edits show at once."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent

# (source directory, the files in it to carry); paths relative to the checkout
BUNDLED = [
    ("firmware", ["synack/**/*.py", "manifest.py", "package.json"]),
    ("hil_tests", ["*.py"]),
]


class BuildPyWithDeviceFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "synack_host" / "_bundled"
        for folder, patterns in BUNDLED:
            for pattern in patterns:
                for src in sorted((ROOT / folder).glob(pattern)):
                    if "__pycache__" in src.parts:
                        continue
                    dst = target / folder / src.relative_to(ROOT / folder)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    self.copy_file(str(src), str(dst), preserve_mode=False)


setup(cmdclass={"build_py": BuildPyWithDeviceFiles})
