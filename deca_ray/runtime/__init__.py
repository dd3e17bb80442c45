"""The Ray runtime: client actors in a placement group, a topology actor, and the driver."""
