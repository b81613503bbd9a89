"""Production hardening: API keys (auth), bounded queries (limits), HTTP middlewares (http).

Metrics live in api/metrics.py. Each piece is wired in `api.app.create_app`
(middlewares, /metrics) and `api.graphql.schema.build_schema` (query limits).
"""
