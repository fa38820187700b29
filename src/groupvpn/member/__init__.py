"""The group member core: registration to key servers, keys, and dynamic policies."""
