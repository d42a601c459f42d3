"""`make loadtest`: search clients and the loader at once against `make run`'s processes (see __main__)."""
