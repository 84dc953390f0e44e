"""aitk: provision Azure Container Apps for inference, deploy, and chat — from the terminal."""

__version__ = "0.1.0"
