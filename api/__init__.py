"""ctxgraph: a versioned, forkable conversation store served over GraphQL."""
