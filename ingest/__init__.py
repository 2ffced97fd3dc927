"""Ingestion: line protocol, HTTP write API, KubeEdge payloads."""
