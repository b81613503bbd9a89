"""The GraphQL layer: types, resolvers, loaders and error mapping (no SQL here)."""
