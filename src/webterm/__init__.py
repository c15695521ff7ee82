"""webterm: a real Linux shell in the browser, one terminal per user."""

__version__ = "0.1.0"
