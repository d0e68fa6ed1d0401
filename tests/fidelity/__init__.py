"""The notebook fidelity corpus and the harness that measures how faithfully checkpoint2svc
reproduces it (see corpus.py)."""
