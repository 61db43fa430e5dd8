"""Reading an IdP's metadata: from an upload, or fetched from its URL — public addresses only,
unless the operator allows private ones (a console URL must not become a way to probe the
internal network)."""
from urllib.parse import urlparse
from xml.etree.ElementTree import ParseError

import httpx
from defusedxml.ElementTree import fromstring
from django.conf import settings

from accounts.network import HostUnresolvable, host_is_public

MAX_METADATA_BYTES = 1024 * 1024
MD_NS = "{urn:oasis:names:tc:SAML:2.0:metadata}"


class MetadataError(ValueError):
    """The metadata cannot be used; the message says why, for an administrator."""


def idp_entity_id(xml: str) -> str:
    """The entity id of the single IdP the metadata describes (with its signing certificate)."""
    try:
        root = fromstring(xml.encode())
    except (ParseError, ValueError) as error:
        raise MetadataError(f"the metadata is not valid XML: {error}") from None
    descriptors = [root] if root.tag == f"{MD_NS}EntityDescriptor" else root.findall(f"{MD_NS}EntityDescriptor")
    idps = [d for d in descriptors if d.find(f"{MD_NS}IDPSSODescriptor") is not None]
    if len(idps) != 1:
        raise MetadataError("the metadata must describe exactly one identity provider")
    if idps[0].find(".//{http://www.w3.org/2000/09/xmldsig#}X509Certificate") is None:
        raise MetadataError("the identity provider's metadata has no signing certificate")
    return idps[0].get("entityID") or ""


def _public(host: str) -> bool:
    try:
        return host_is_public(host)
    except HostUnresolvable as error:
        raise MetadataError(str(error)) from None


def metadata_fetch(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise MetadataError("the metadata URL must be an http(s) URL")
    if not settings.HAVEN_SAML_METADATA_ALLOW_PRIVATE and not _public(parsed.hostname):
        raise MetadataError(f"{parsed.hostname} is not a public address; Haven only fetches metadata from "
                            "public addresses (an operator can allow private ones)")
    try:
        with httpx.stream("GET", url, timeout=10, follow_redirects=False) as response:
            response.raise_for_status()
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_METADATA_BYTES:
                    raise MetadataError("the metadata is larger than 1 MB")
    except httpx.HTTPError as error:
        raise MetadataError(f"could not fetch the metadata: {error}") from None
    return body.decode("utf-8", errors="replace")
