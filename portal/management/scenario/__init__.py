"""The demo distributor scenario built by ``manage.py demo_data``."""
