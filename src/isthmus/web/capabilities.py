"""Capabilities: OPTIONS on the service root or any resource (PS3.18 8.9, described in WADL).

The answer is a WADL document (`application/vnd.sun.wadl+xml`) describing the
resources of the service, their methods, query parameters and media types, and
an `Allow` header listing the methods of the resource asked about.  The same
table drives both, and docs/conformance.md.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from isthmus.web import media_types as mt
from isthmus.web.errors import not_found
from isthmus.web.negotiation import Offer, negotiate
from isthmus.web.service import DICOMWEB_PREFIX, service_root

WADL_NS = "http://wadl.dev.java.net/2009/02"
QIDO_TYPES = (mt.DICOM_JSON, f'multipart/related; type="{mt.DICOM_XML}"')
METADATA_TYPES = QIDO_TYPES
DICOM_TYPES = (f'multipart/related; type="{mt.DICOM}"',)
RENDERED_TYPES = (mt.JPEG, mt.PNG, mt.GIF, 'multipart/related; type="image/jpeg"')
STOW_RESPONSE = (mt.DICOM_JSON, mt.DICOM_XML)
QIDO_PARAMS = ("{attributeID}", "includefield", "fuzzymatching", "limit", "offset")
RENDER_PARAMS = ("window", "viewport", "quality")
_S, _R, _I = "studies/{study}", "series/{series}", "instances/{instance}"

# path (relative to the service root) → {method: (query parameters, media types)}
RESOURCES: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "studies": {"GET": (QIDO_PARAMS, QIDO_TYPES), "POST": ((), STOW_RESPONSE)},
    "series": {"GET": (QIDO_PARAMS, QIDO_TYPES)},
    "instances": {"GET": (QIDO_PARAMS, QIDO_TYPES)},
    _S: {
        "GET": (("transfer-syntax",), DICOM_TYPES),
        "POST": ((), STOW_RESPONSE),
        "DELETE": ((), (mt.JSON,)),
    },
    f"{_S}/metadata": {"GET": ((), METADATA_TYPES)},
    f"{_S}/rendered": {"GET": (RENDER_PARAMS, RENDERED_TYPES)},
    f"{_S}/thumbnail": {"GET": (("viewport",), (mt.JPEG, mt.PNG, mt.GIF))},
    f"{_S}/series": {"GET": (QIDO_PARAMS, QIDO_TYPES)},
    f"{_S}/instances": {"GET": (QIDO_PARAMS, QIDO_TYPES)},
    f"{_S}/{_R}": {"GET": (("transfer-syntax",), DICOM_TYPES), "DELETE": ((), (mt.JSON,))},
    f"{_S}/{_R}/metadata": {"GET": ((), METADATA_TYPES)},
    f"{_S}/{_R}/rendered": {"GET": (RENDER_PARAMS, RENDERED_TYPES)},
    f"{_S}/{_R}/thumbnail": {"GET": (("viewport",), (mt.JPEG, mt.PNG, mt.GIF))},
    f"{_S}/{_R}/instances": {"GET": (QIDO_PARAMS, QIDO_TYPES)},
    f"{_S}/{_R}/{_I}": {
        "GET": (("transfer-syntax",), DICOM_TYPES + (mt.DICOM,)),
        "DELETE": ((), (mt.JSON,)),
    },
    f"{_S}/{_R}/{_I}/metadata": {"GET": ((), METADATA_TYPES)},
    f"{_S}/{_R}/{_I}/rendered": {"GET": (RENDER_PARAMS, RENDERED_TYPES)},
    f"{_S}/{_R}/{_I}/thumbnail": {"GET": (("viewport",), (mt.JPEG, mt.PNG, mt.GIF))},
    f"{_S}/{_R}/{_I}/frames/{{frames}}": {
        "GET": (
            (),
            (
                'multipart/related; type="application/octet-stream"',
                'multipart/related; type="image/*"',
            ),
        )
    },
    f"{_S}/{_R}/{_I}/frames/{{frames}}/rendered": {"GET": (RENDER_PARAMS, RENDERED_TYPES)},
    f"{_S}/{_R}/{_I}/frames/{{frames}}/thumbnail": {
        "GET": (("viewport",), (mt.JPEG, mt.PNG, mt.GIF))
    },
    f"{_S}/{_R}/{_I}/bulkdata/{{tag}}": {
        "GET": ((), ('multipart/related; type="application/octet-stream"', mt.OCTET_STREAM))
    },
    # UPS-RS, the Worklist Service (PS3.18 11; web/ups.py)
    "workitems": {
        "GET": (QIDO_PARAMS, QIDO_TYPES),
        "POST": (("{workitem}",), (mt.DICOM_JSON, mt.DICOM_XML)),
    },
    "workitems/{workitem}": {
        "GET": ((), (mt.DICOM_JSON, mt.DICOM_XML)),
        "POST": (("{transaction}",), (mt.DICOM_JSON, mt.DICOM_XML)),
    },
    "workitems/{workitem}/state": {"PUT": ((), (mt.DICOM_JSON, mt.DICOM_XML))},
    "workitems/{workitem}/cancelrequest": {"POST": ((), (mt.DICOM_JSON, mt.DICOM_XML))},
    "workitems/{workitem}/subscribers/{aetitle}": {
        "POST": (("deletionlock", "{attributeID}"), (mt.DICOM_JSON,)),
        "DELETE": ((), (mt.DICOM_JSON,)),
    },
    "workitems/{workitem}/subscribers/{aetitle}/suspend": {"POST": ((), (mt.DICOM_JSON,))},
}


def routes() -> list[Route]:
    """OPTIONS on the root and on every resource template (unknown paths stay 404)."""
    return [Route("/", capabilities, methods=["OPTIONS"])] + [
        Route("/" + path, capabilities, methods=["OPTIONS"]) for path in RESOURCES
    ]


def wadl(base: str) -> bytes:
    """The WADL document of the whole service."""
    root = ET.Element("application", {"xmlns": WADL_NS})
    resources = ET.SubElement(root, "resources", {"base": base + "/"})
    for path, methods in RESOURCES.items():
        resource = ET.SubElement(resources, "resource", {"path": path})
        for name in re.findall(r"{(\w+)}", path):
            ET.SubElement(
                resource,
                "param",
                {"name": name, "style": "template", "type": "xsd:string", "required": "true"},
            )
        for verb, (params, types) in methods.items():
            method = ET.SubElement(resource, "method", {"name": verb})
            request = ET.SubElement(method, "request")
            for param in params:
                ET.SubElement(
                    request, "param", {"name": param, "style": "query", "type": "xsd:string"}
                )
            response = ET.SubElement(method, "response", {"status": "200"})
            for media_type in types:
                ET.SubElement(response, "representation", {"mediaType": media_type})
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(
        root, encoding="unicode"
    ).encode("utf-8")


def allowed_methods(path: str) -> list[str]:
    """Methods of the resource at `path` (relative to the service root), with OPTIONS."""
    segments = [s for s in path.strip("/").split("/") if s]
    for template, methods in RESOURCES.items():
        parts = template.split("/")
        if len(parts) == len(segments) and all(
            p.startswith("{") or p == s for p, s in zip(parts, segments, strict=True)
        ):
            return sorted(set(methods) | ({"HEAD"} if "GET" in methods else set())) + ["OPTIONS"]
    return ["OPTIONS"] if not segments else []


async def capabilities(request: Request) -> Response:
    """Retrieve Capabilities (PS3.18 8.9): WADL plus the resource's Allow header."""
    path = request.url.path.split(DICOMWEB_PREFIX, 1)[-1]
    methods = allowed_methods(path)
    if not methods:
        raise not_found(f"no DICOMweb resource at {request.url.path}")
    negotiate(request, [Offer(mt.WADL), Offer("application/xml")])
    return Response(
        wadl(service_root(request)), media_type=mt.WADL, headers={"Allow": ", ".join(methods)}
    )
