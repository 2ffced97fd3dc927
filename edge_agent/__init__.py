"""The edgets processes: configuration, CLI, HTTP app assembly, lifecycle of edge and cloud nodes.

Wires ingest, query, sync and storage together; nothing below imports from here.
"""
