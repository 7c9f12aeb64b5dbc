"""Data for every host. Connection details come from the settings file."""

# Every operation runs with sudo; the password (if any) comes from the
# environment or a file outside the repo, through the inventory.
_sudo = True

# The sudo password reaches sudo through a 0700 askpass script, never a command
# line (pyinfra's own way shows it in the target's process list).
from mcpedge import sudo_askpass as _sudo_askpass  # noqa: E402,F401

# A fact's answer is read once per host while nothing has changed there (pyinfra
# 3.10 reads it again for every check and for both of its phases).
from mcpedge import fact_cache as _fact_cache  # noqa: E402,F401
