"""The rules of an operation, once: the resolvers and the plans (api/graphql/plans.py)
both call these, so a planned request and graphql-core's obey the same checks."""
