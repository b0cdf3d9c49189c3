"""HTTP and WebSocket route groups: one controller per group, small and guard-declaring.

Request and response bodies are msgspec Structs defined beside their controller; handlers call
one use case each and convert its result explicitly. Never return a domain object or a row.
"""
