"""XMP packets carrying the TC260 ``AIGC`` label and the IPTC digital source type.

The studio writes one ``rdf:Description`` in element form::

    <rdf:Description rdf:about="" xmlns:TC260="http://www.tc260.org.cn/ns/AIGC/1.0/" ...>
      <TC260:AIGC>{"Label":"1","ContentProducer":...}</TC260:AIGC>
      <Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/...</Iptc4xmpExt:DigitalSourceType>
    </rdf:Description>

and reads what other tools write too: the properties as attributes of ``rdf:Description``, any prefix
bound to the same namespace URIs, several descriptions, the source type as ``rdf:resource``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

from .aigc import IPTC_EXT_NS, TC260_NS, AigcLabel, LabelFormatError

__all__ = ["XmpLabels", "build_xmp", "label_json", "parse_xmp"]

_RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
# Some writers drop the trailing slash of the TC260 namespace; the property is the same.
_TC260_NAMES = {f"{{{TC260_NS}}}AIGC", f"{{{TC260_NS.rstrip('/')}}}AIGC"}
_SOURCE_NAME = f"{{{IPTC_EXT_NS}}}DigitalSourceType"
# Characters XML 1.0 cannot carry, not even as character references.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MAX_PACKET = 4 * 1024 * 1024  # an XMP packet in an image is kilobytes; JPEG caps one segment at 64 KB

_HEAD = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_TAIL = '<?xpacket end="w"?>'


def label_json(aigc: AigcLabel) -> str:
    """``aigc.to_json()`` with the few characters XML and UTF-8 cannot hold (lone surrogates, U+FFFE,
    U+FFFF; control characters JSON escapes already) written as JSON ``\\uXXXX`` escapes, so the same text
    goes into XMP and PNG chunks and reads back to the same label."""
    return _NOT_XML.sub(lambda m: f"\\u{ord(m[0]):04x}", aigc.to_json())


def build_xmp(aigc: AigcLabel | None, source_type: str | None) -> str:
    """A complete XMP packet with ``TC260:AIGC`` = the label's JSON and ``Iptc4xmpExt:DigitalSourceType``
    = ``source_type``, each only when given. ValueError for a source type XML cannot hold."""
    properties = []
    if aigc is not None:
        properties.append(f"   <TC260:AIGC>{escape(label_json(aigc))}</TC260:AIGC>\n")
    if source_type is not None:
        bad = _NOT_XML.search(source_type)
        if bad:
            raise ValueError(f"source_type must be a URI XML can hold; it has U+{ord(bad[0]):04X}")
        properties.append(f"   <Iptc4xmpExt:DigitalSourceType>{escape(source_type)}</Iptc4xmpExt:DigitalSourceType>\n")
    return (
        f"{_HEAD}"
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="AIGC Studio">\n'
        f' <rdf:RDF xmlns:rdf="{_RDF_NS}">\n'
        '  <rdf:Description rdf:about=""\n'
        f'    xmlns:TC260="{TC260_NS}"\n'
        f'    xmlns:Iptc4xmpExt="{IPTC_EXT_NS}">\n'
        f"{''.join(properties)}"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        f"{_TAIL}"
    )


@dataclass
class XmpLabels:
    """What an XMP packet says about AI generation."""

    aigc: AigcLabel | None
    aigc_error: str | None  # present but malformed: why
    source_type: str | None


def _text(packet: str | bytes) -> str:
    if isinstance(packet, str):
        return packet
    # XMP may be UTF-8 (nearly always) or UTF-16/32 with a BOM
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if packet.startswith(bom):
            return packet.decode(codec)
    return packet.decode("utf-8")


def _value(element: ET.Element) -> str:
    # Element form: the text; or an rdf:resource URI; or the first item of an rdf:Alt/Seq/Bag.
    resource = element.get(f"{{{_RDF_NS}}}resource")
    if resource is not None:
        return resource
    item = element.find(f".//{{{_RDF_NS}}}li")
    if item is not None:
        return (item.text or "").strip()
    return (element.text or "").strip()


def parse_xmp(packet: str | bytes) -> XmpLabels:
    """The TC260 label and IPTC digital source type in an XMP packet, in attribute or element form and
    under any prefix. ValueError (with the reason) for text that is not XML or is over 4 MB, or holds a
    DOCTYPE (XMP has none; refusing it rules out entity expansion). A malformed label is not an error
    here: it comes back as ``aigc_error``."""
    if len(packet) > _MAX_PACKET:
        raise ValueError(f"XMP packet is {len(packet)} bytes; at most {_MAX_PACKET} are read")
    try:
        text = _text(packet)
    except UnicodeDecodeError as exc:
        raise ValueError(f"XMP packet is not UTF-8 or UTF-16 text: {exc}") from None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ValueError("XMP packet has a DOCTYPE or ENTITY declaration, which XMP does not allow")
    start = text.find("<")
    if start < 0:
        raise ValueError("XMP packet holds no XML element")
    try:
        root = ET.fromstring(text[start:].strip("\x00 \t\r\n"))
    except ET.ParseError as exc:
        raise ValueError(f"XMP packet is not well-formed XML: {exc}") from None

    raw: str | None = None
    source: str | None = None
    for element in root.iter():
        if element.tag == f"{{{_RDF_NS}}}Description":
            for name, value in element.attrib.items():
                if name in _TC260_NAMES and raw is None:
                    raw = value
                elif name == _SOURCE_NAME and source is None:
                    source = value.strip()
        elif element.tag in _TC260_NAMES and raw is None:
            raw = _value(element)
        elif element.tag == _SOURCE_NAME and source is None:
            source = _value(element)
    if raw is None:
        return XmpLabels(aigc=None, aigc_error=None, source_type=source or None)
    try:
        return XmpLabels(aigc=AigcLabel.from_json(raw), aigc_error=None, source_type=source or None)
    except LabelFormatError as exc:
        return XmpLabels(aigc=None, aigc_error=f"XMP TC260:AIGC: {exc}", source_type=source or None)
