"""The coordinator's side of attaching to live training runs (``kdiff attach``): talk to a
job's probe (client), check and store its snapshot (snapshot), replay it against a reference
worker or another run's snapshot and compare layer by layer (replay)."""
