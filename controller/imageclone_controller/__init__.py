"""image-clone's watcher controller: keeps every workload's images backed up and rewritten."""

__version__ = "0.1.0"
