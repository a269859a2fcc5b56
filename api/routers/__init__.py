"""One router module per API family; each exposes `install(app, services)`."""
