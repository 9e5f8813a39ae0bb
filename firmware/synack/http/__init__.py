"""HTTP/1.0 and HTTP/1.1 for synack.

- ``request``:  request writer and URL helpers (sans-I/O)
- ``response``: response reader, bytes in, events out (sans-I/O); ``head``: its Head
- ``client``:   blocking client with keep-alive connections over synack.socket
- ``aclient``:  the same client for asyncio (AsyncClient)
- ``core``, ``body``: what both clients share: the pool, the retry and redirect
                decisions; the response (BaseResponse, and the blocking Response)
- ``errors``:   HTTPError and its subclasses

Nothing is imported here, so a program that only needs the reader does not pay for the
client (or the socket layer) in RAM: ``from synack.http.client import Client``.
"""
