"""What the planner can call: character library, generation engine, quality gate, output store, jobs."""
