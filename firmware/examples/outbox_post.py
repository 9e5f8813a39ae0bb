# Store readings while offline and deliver each exactly once when online: the outbox is
# kept in the flash filesystem, survives reboots, and removes a message only after the
# server acknowledged it (the server deduplicates on X-Message-Id).
import time

from synack.http.client import Client
from synack.outbox import FileStore, Outbox

URL = "http://example.com/messages"

outbox = Outbox(FileStore("/outbox"), max_messages=200, max_bytes=32768)
client = Client()


def deliver(msg_id, payload):
    try:
        resp = client.post(URL, body=payload, headers={"X-Message-Id": str(msg_id)})
        resp.read()
        return 200 <= resp.status < 300
    except OSError:
        return False      # offline: keep it for the next flush


while True:
    outbox.put(b'{"t": %d}' % time.time())
    sent = outbox.flush(deliver)
    print("queued", len(outbox), "sent", sent)
    time.sleep(60)
