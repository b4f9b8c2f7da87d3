"""Flask + Cableway: the runnable version of docs/recipes/flask.md (see README.md)."""
