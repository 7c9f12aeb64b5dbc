"""Tasks of Ubuntu/Debian gateway hosts (group ubuntu), in the order deploy.py runs them."""
