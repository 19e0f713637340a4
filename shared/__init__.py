"""BOBO Sync for Azure: the logic and adapters behind the function app and the command line."""

__version__ = "0.2.0"
SERVICE_NAME = "bobo-sync-azure"
