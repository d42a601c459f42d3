"""`make loadtest`: search clients and the loader against the local stack at once (see __main__)."""
