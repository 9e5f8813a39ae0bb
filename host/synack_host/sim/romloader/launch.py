"""Start a virtual board in download mode from tests and benchmarks:
``start_download_board("--chip", "esp32s3", flash=path)`` runs ``synack sim board
--download`` as a process with a control socket and returns it (``port``, ``status()``,
``reset()``, ``download()``, ``commands()``, ``stop()``)."""

from __future__ import annotations

import json
import os
import tempfile

from ..launch import SimProcess


class RunningDownloadBoard(SimProcess):
    kind = "board"

    def _extra_args(self) -> list[str]:
        self._dir = tempfile.TemporaryDirectory(prefix="synack-download-")
        self.control_path = os.path.join(self._dir.name, "control")
        return ["--download", "--control", self.control_path]

    def stop(self) -> int | None:
        code = super().stop()
        self._dir.cleanup()
        return code

    def control(self, request: str) -> str:
        from ..control import FaultClient

        return FaultClient(self.control_path).send(request)

    def status(self) -> dict:
        return json.loads(self.control("status"))

    def commands(self) -> list[dict]:
        return json.loads(self.control("log"))

    def reset(self) -> str:
        """Press EN with BOOT released: boot from flash."""
        return self.control("reset")

    def download(self) -> str:
        """Hold BOOT and press EN: back to the ROM loader."""
        return self.control("download")


def start_download_board(*args: str, flash: str | os.PathLike | None = None,
                         ready_timeout: float = 10.0) -> RunningDownloadBoard:
    """The arguments of ``synack sim board`` besides ``--download`` (``--chip``,
    ``--mac``, ``--no-pacing`` ...); ``flash``: the flash file."""
    extra = ["--flash", os.fspath(flash)] if flash is not None else []
    return RunningDownloadBoard([*extra, *args], ready_timeout)
