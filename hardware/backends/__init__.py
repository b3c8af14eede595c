"""Device backends: real ones (imported lazily, optional extras) and simulated ones (robosuite)."""
