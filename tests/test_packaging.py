"""firmware/package.json (mip) lists exactly the device files, and manifest.py freezes
the package."""

import re

from synack_host import packaging


def test_package_json_is_in_sync_with_the_firmware_tree():
    current = (packaging.FIRMWARE_DIR / "package.json").read_text()
    assert current == packaging.package_json(), (
        "firmware/package.json is stale: run python -m synack_host.packaging")


def test_every_device_module_is_listed():
    files = packaging.firmware_files()
    assert "synack/__init__.py" in files
    assert "synack/at/parser.py" in files
    assert "synack/modems/sim7600.py" in files


def test_manifest_freezes_the_package():
    text = (packaging.FIRMWARE_DIR / "manifest.py").read_text()
    assert 'package("synack")' in text


def test_the_version_is_set_in_one_place():
    """synack_host.__version__ is the version; pyproject reads it (dynamic), package.json
    is generated from it, and the freezing manifest must say the same."""
    from synack_host import __version__

    assert packaging.VERSION == __version__
    text = (packaging.FIRMWARE_DIR / "manifest.py").read_text()
    assert f'version="{__version__}"' in text
    pyproject = (packaging.FIRMWARE_DIR.parent / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert not re.search(r'(?m)^version = "', pyproject)
