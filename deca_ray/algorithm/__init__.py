"""Pure-torch DECA: block partition and schedule, the inner step, mixing, topologies.

Nothing here imports ray, mlflow or pydantic: the functions run on plain tensors in tests.
"""
