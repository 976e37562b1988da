"""Gateway benchmark: fake upstream, pass-through relay, wrk load, figures as JSON."""
