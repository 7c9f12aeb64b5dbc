"""Data for every host. Connection details come from the settings file."""

# Every operation runs with sudo; the password (if any) comes from the
# environment or a file outside the repo, through the inventory (and reaches
# sudo through mcpedge.pyinfra_compat's askpass script, never a command line).
_sudo = True
