"""What the planner can call: characters, engine, quality gate, output store, jobs."""
