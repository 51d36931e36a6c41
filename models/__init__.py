"""The model zoo: FluxMusic and baseline adapters behind one interface (see `base.py`)."""
