"""A throw-away PKI made at test time by the ``openssl`` command: CAs and the leaf
certificates a test's HTTPS servers present.

Used by the HIL ``test_pki`` fixture (hil_tests/test_https_polling.py) and by
tests/test_tls.py, so that both trust the same kind of certificates: EC P-256 keys,
SHA-256 signatures, a subjectAltName for every name (an IP address gets an ``IP:`` entry
and a ``DNS:`` entry, because TLS stacks differ in which one they compare a numeric host
with). Usable without pytest::

    pki = Pki(tmpdir)
    pki.ca("ca")                                   # ca.pem, ca.der, ca.key
    pki.leaf("server", ca="ca", names=["127.0.0.1"])   # server.pem signed by ca
    pki.leaf("old", ca="ca", dates=("20200101000000Z", "20200201000000Z"))

Private keys stay in files; nothing here prints or returns their contents.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import Iterable
from pathlib import Path

__all__ = ["Pki", "PkiError", "SERVER_CERTS", "hil_pki", "unavailable"]

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

# `openssl ca` needs a database; a minimal one that signs whatever subject it is given
_CA_CNF = """[ca]
default_ca = test
[test]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
"""


class PkiError(RuntimeError):
    """openssl is missing or one of its commands failed (the message has its stderr)."""


def unavailable() -> str | None:
    """Why certificates cannot be made here (no openssl command), or None."""
    if shutil.which("openssl") is None:
        return "the openssl command is not installed (needed to make test certificates)"
    return None


def san(names: Iterable[str]) -> str:
    """The subjectAltName value for ``names``: ``DNS:x`` for each, plus ``IP:x`` for an
    address (mbedTLS and OpenSSL compare an IP host with IP entries; older stacks with
    DNS entries)."""
    entries: list[str] = []
    for name in names:
        try:
            ipaddress.ip_address(name)
            entries.append(f"IP:{name}")
        except ValueError:
            pass
        entries.append(f"DNS:{name}")
    if not entries:
        raise ValueError("a leaf certificate needs at least one name")
    return ",".join(entries)


class Pki:
    """CAs and leaves in ``directory``; each file is ``<name>.pem`` (PEM), ``<name>.der``
    (DER, for a CA) and ``<name>.key`` (the key)."""

    def __init__(self, directory: str | Path):
        reason = unavailable()
        if reason:
            raise PkiError(reason)
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "ca.cnf").write_text(_CA_CNF)
        if not (self.dir / "index.txt").exists():
            (self.dir / "index.txt").write_text("")
            (self.dir / "serial").write_text("1000\n")

    def _openssl(self, *args: str) -> None:
        """Run one openssl command in the PKI directory; its stderr names what failed
        (openssl prints no key material on stderr)."""
        proc = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise PkiError(f"openssl {args[0]} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-600:]}")

    def path(self, name: str, ext: str = "pem") -> Path:
        return self.dir / f"{name}.{ext}"

    def ca(self, name: str = "ca", days: int = 2) -> Path:
        """A self-signed CA ``name`` (CN "synack test <name>"); returns its PEM path (the
        DER copy, which a device loads without parsing PEM, is next to it)."""
        self._openssl("req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.pem",
                      "-days", str(days), "-subj", f"/CN=synack test {name}")
        self._openssl("x509", "-in", f"{name}.pem", "-outform", "DER", "-out", f"{name}.der")
        return self.path(name)

    def leaf(self, name: str, ca: str = "ca", names: Iterable[str] = ("localhost",),
             key: str | None = None, dates: tuple[str, str] | None = None,
             days: int = 2) -> Path:
        """A server certificate ``name``.pem for ``names`` (the first is the CN) signed by
        CA ``ca``. ``key``: the key file's stem, shared by several leaves (made if
        missing; default ``name``). ``dates``: (notBefore, notAfter) as
        YYYYMMDDHHMMSSZ, else valid from now for ``days``."""
        names = list(names)
        key = key or name
        if not self.path(key, "key").exists():
            self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                          "ec_paramgen_curve:prime256v1", "-out", f"{key}.key")
        self._openssl("req", "-new", "-key", f"{key}.key", "-out", f"{name}.csr",
                      "-subj", f"/CN={names[0] if names else name}")
        (self.dir / f"{name}.ext").write_text(
            f"subjectAltName={san(names)}\nbasicConstraints=CA:FALSE\n")
        validity = ["-startdate", dates[0], "-enddate", dates[1]] if dates else [
            "-days", str(days)]
        self._openssl("ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", f"{ca}.pem",
                      "-keyfile", f"{ca}.key", "-in", f"{name}.csr", "-out", f"{name}.pem",
                      "-extfile", f"{name}.ext", *validity)
        return self.path(name)

    def server_context(self, name: str, key: str | None = None) -> ssl.SSLContext:
        """A server-side ssl context presenting leaf ``name`` (with ``key``.key, default
        ``name``.key), for ``HttpServer(tls=...)``."""
        for path in (self.path(name), self.path(key or name, "key")):
            if not path.exists():
                raise PkiError(f"no {path.name} in {self.dir}: make it with leaf() first")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.path(name), self.path(key or name, "key"))
        return ctx


# the server certificates of the HIL https tests: name -> (signing CA, the name in it);
# None stands for the host the device reaches the servers at. All share the key
# "server"; "unknown-ca" is signed by a CA the device is never given.
SERVER_CERTS = {
    "server": ("ca", None),
    "wrong-host": ("ca", "wrong-host.synack.invalid"),
    "unknown-ca": ("other", None),
}


def hil_pki(directory: str | Path, server_host: str) -> Pki:
    """The HIL tests' PKI in ``directory``: CAs ``ca`` and ``other`` and the leaves of
    SERVER_CERTS for ``server_host`` (``pki.server_context(name, "server")`` serves one)."""
    pki = Pki(directory)
    pki.ca("ca")
    pki.ca("other")
    for name, (ca, host) in SERVER_CERTS.items():
        pki.leaf(name, ca=ca, names=[host or server_host], key="server")
    return pki
