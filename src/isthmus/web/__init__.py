"""The HTTP door: DICOMweb, WADO-URI, admin API, viewer and WebSocket endpoints (ASGI)."""
