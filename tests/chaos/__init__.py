"""The chaos run (`make chaos`): jobs through a local stack while faults keep happening."""
