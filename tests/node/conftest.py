"""Fixtures of the node tests: the DIMSE tests' nodes (the router and access control
are exercised through a running node's DICOM port)."""

from __future__ import annotations

from dimse.conftest import catalogue_node, dcmtk_tools, dimse_node, module_node, start_node

__all__ = ["catalogue_node", "dcmtk_tools", "dimse_node", "module_node", "start_node"]
