# Freeze synack into a MicroPython firmware build:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/synack/firmware/manifest.py
# (include("$(PORT_DIR)/boards/manifest.py") first to keep the port's own frozen modules.)
metadata(description="synack: phone-like TCP/HTTP networking over Wi-Fi or a cellular modem", version="0.1.0")

package("synack")
