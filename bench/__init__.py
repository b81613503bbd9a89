"""ctxgraph's HTTP benchmark: a deterministic data set, a real `ctxgraph serve`, wrk.

`python -m bench --help` lists the commands; bench/README.md explains them.
"""
