"""BOBO Sync for Azure: the logic and adapters behind the function app and the command line."""

__version__ = "0.1.0"
SERVICE_NAME = "bobo-sync-azure"
