"""The wire protocol shared by the worker and its clients (wire.py); no third-party imports."""
