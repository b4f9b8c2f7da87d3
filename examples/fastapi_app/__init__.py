"""FastAPI + Cableway: the runnable version of docs/recipes/fastapi.md (see README.md)."""
