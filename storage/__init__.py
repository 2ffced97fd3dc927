"""Durable storage for edgets: WAL, in-memory columnar buffer, segments, reader API.

Depends on nothing else in edgets; ingest, query and sync depend on it.
"""
