#!/usr/bin/env python3
"""Independent TLS tooling for the TLS tests: the openssl command line makes the PKI and
signs access tokens, Python's ssl module (OpenSSL) is the Diameter-over-TLS client.

    tls_tools.py pki DIR
        ca.pem/.key, other-ca.pem/.key (a CA the server does not trust);
        server.pem/.key (localhost, 127.0.0.1; from ca);
        client.pem/.key (DNS client.test; from ca), stranger.pem/.key (the same from other-ca);
        nrf-rsa.key/.pub, nrf-ec.key/.pub, other-nrf.key (an RSA key nobody trusts).
    tls_tools.py token KEY ALG CLAIMS_JSON
        prints a compact JWS (RS256 or ES256) over CLAIMS_JSON signed with KEY.
    tls_tools.py diameter PORT CA CERT KEY
        connects over TLS (CERT/KEY "-": no client certificate), and for each line of hex
        on stdin sends it as one Diameter message and prints the answer as hex; prints
        "refused: REASON" and stops when the server ends the handshake or the connection.
"""

import base64
import json
import os
import socket
import ssl
import subprocess
import sys


def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], input=stdin, check=True, capture_output=True).stdout


def ec_key(path):
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)


def ca(directory, name, subject):
    key = os.path.join(directory, f"{name}.key")
    ec_key(key)
    openssl("req", "-x509", "-new", "-key", key, "-out", os.path.join(directory, f"{name}.pem"),
            "-days", "2", "-subj", f"/CN={subject}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def leaf(directory, name, issuer, subject, extensions, serial):
    key, csr = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.csr")
    ext = os.path.join(directory, f"{name}.ext")
    ec_key(key)
    openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={subject}")
    with open(ext, "w") as out:
        out.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" + extensions)
    openssl("x509", "-req", "-in", csr, "-CA", os.path.join(directory, f"{issuer}.pem"),
            "-CAkey", os.path.join(directory, f"{issuer}.key"), "-set_serial", str(serial),
            "-out", os.path.join(directory, f"{name}.pem"), "-days", "2", "-extfile", ext)


def pki(directory):
    os.makedirs(directory, exist_ok=True)
    ca(directory, "ca", "Tollgate Test CA")
    ca(directory, "other-ca", "Someone Else's CA")
    leaf(directory, "server", "ca", "localhost",
         "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n", 1)
    client = "subjectAltName=DNS:client.test\nextendedKeyUsage=clientAuth\n"
    leaf(directory, "client", "ca", "client.test", client, 2)
    leaf(directory, "stranger", "other-ca", "client.test", client, 1)
    for name in ["nrf-rsa", "other-nrf"]:
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", os.path.join(directory, f"{name}.key"))
    ec_key(os.path.join(directory, "nrf-ec.key"))
    for name in ["nrf-rsa", "nrf-ec"]:
        openssl("pkey", "-in", os.path.join(directory, f"{name}.key"), "-pubout",
                "-out", os.path.join(directory, f"{name}.pub"))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_integer(data, at):
    """An ASN.1 INTEGER at `at`: its value as 32 big-endian bytes, and where it ends."""
    assert data[at] == 0x02
    length = data[at + 1]
    value = data[at + 2:at + 2 + length].lstrip(b"\0")
    return value.rjust(32, b"\0"), at + 2 + length


def token(key, alg, claims):
    header = {"alg": alg, "typ": "JWT"}
    signed = f"{b64url(json.dumps(header).encode())}.{b64url(claims.encode())}"
    signature = openssl("dgst", "-sha256", "-sign", key, stdin=signed.encode())
    if alg == "ES256":
        # openssl writes ECDSA-Sig-Value (DER); JWS wants r ‖ s (RFC 7518 §3.4).
        at = 3 if signature[1] & 0x80 else 2
        r, at = der_integer(signature, at)
        s, _ = der_integer(signature, at)
        signature = r + s
    print(f"{signed}.{b64url(signature)}")


def read_exactly(stream, count):
    data = b""
    while len(data) < count:
        chunk = stream.recv(count - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def diameter(port, ca_file, cert, key):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if cert != "-":
        context.load_cert_chain(cert, key)
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as stream:
                for line in sys.stdin:
                    if not line.strip():
                        continue
                    stream.sendall(bytes.fromhex(line.strip()))
                    header = read_exactly(stream, 20)
                    length = int.from_bytes(header[1:4], "big")
                    answer = header + read_exactly(stream, length - 20)
                    print(answer.hex(), flush=True)
    except (ssl.SSLError, ConnectionError, OSError) as err:
        print(f"refused: {err}", flush=True)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    {"pki": pki, "token": token, "diameter": diameter}[command](*args)


if __name__ == "__main__":
    main()
