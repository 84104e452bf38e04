"""``specialize demo``: the whole mission on the embedded defaults, ending in a report."""
