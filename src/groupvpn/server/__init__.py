"""The group key server (GCKS) core: groups, keys, members."""
