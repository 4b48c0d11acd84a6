"""Model families: each registers itself in `registry` (config kind, builder, export parts, train step, tasks)."""
