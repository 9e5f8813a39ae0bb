"""firmware/package.json (mip) lists exactly the device files, and manifest.py freezes
the package."""

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
