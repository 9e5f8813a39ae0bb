"""The virtual ESP ROM serial loader: what a board is while BOOT is held at reset.

Unmodified esptool (v5) flashes it: ``synack sim board --download`` prints a pty path,
``esptool --port PTY --before no-reset --after no-reset write-flash 0x1000 fw.bin``.

Layers, data flowing down:

* ``driver``    - the pty, pacing at the loader's baud, the control socket, the switch
                  to the virtual MicroPython board (``..board``) once the flash boots;
* ``loader``    - the protocol state machine (ROM loader, then flasher stub), sans-I/O;
* ``protocol``, ``slip`` - packets, opcodes, status codes, checksum; SLIP framing;
* ``registers`` - READ_REG/WRITE_REG, with the SPI controller esptool reads flash IDs by;
* ``chips``, ``flash`` - facts about ESP32 / ESP32-S3; a NOR flash backed by a file;
* ``boot``      - what the ROM does with the image at the boot offset;
* ``images``    - valid test images, built with esptool's image classes;
* ``launch``    - start one as a process from tests (``start_download_board``).
"""
