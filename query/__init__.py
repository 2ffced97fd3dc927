"""InfluxQL for edgets: lexer, parser, AST, executor over DuckDB and InfluxDB-shaped results.

Public entry points: `parse_query` (influxql_parser) and `QueryExecutor` (influxql_exec).
"""
