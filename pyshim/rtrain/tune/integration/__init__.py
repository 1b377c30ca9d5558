"""Integrations of rtrain.tune with other libraries (Ray's ray.tune.integration)."""
