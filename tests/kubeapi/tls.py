"""A throwaway CA and a server certificate for the stand-in's HTTPS mode (trustme)."""

from __future__ import annotations

from collections.abc import Sequence

import trustme


def make_ca_and_server_cert(names: Sequence[str]) -> tuple[bytes, bytes, bytes]:
    """(CA certificate PEM, server certificate PEM, server key PEM) for ``names``
    (hostnames and IP addresses go into the subjectAltName)."""
    ca = trustme.CA(organization_name="kubeapi stand-in")
    leaf = ca.issue_cert(*names)
    return (
        ca.cert_pem.bytes(),
        b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
        leaf.private_key_pem.bytes(),
    )
