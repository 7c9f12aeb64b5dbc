"""Tasks of Synology NAS hosts (group synology)."""
