"""The chaos matrix: faults injected into real processes on real servers, seven invariants
checked against an independent oracle after every round. `make chaos`; see matrix.py."""
