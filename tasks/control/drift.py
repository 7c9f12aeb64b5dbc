"""Control host: the systemd timer and service that check for drift and repair it."""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from mcpedge.model import for_host


@deploy("Drift control")
def configure_drift_control():
    ctl = for_host(host)
    unit = ctl["unit"]
    files.directory(name="Drift reports and state directory", path=ctl["state_dir"],
                    user=ctl["user"], group=ctl["user"], mode="700")
    service = files.template(
        name="Drift check service unit", src=f"templates/etc/systemd/system/{unit}.service.j2",
        dest=f"/etc/systemd/system/{unit}.service", user="root", group="root", mode="644",
        create_remote_dir=False, ctl=ctl,
    )
    timer = files.template(
        name="Drift check timer unit", src=f"templates/etc/systemd/system/{unit}.timer.j2",
        dest=f"/etc/systemd/system/{unit}.timer", user="root", group="root", mode="644",
        create_remote_dir=False, ctl=ctl,
    )
    systemd.daemon_reload(name="Reload systemd units (drift units changed)", _if=any_changed(service, timer))
    systemd.service(name="Drift check timer running and enabled", service=f"{unit}.timer",
                    running=True, enabled=True)
    # A running timer keeps its old schedule until restarted.
    systemd.service(name="Restart the drift timer (schedule changed)", service=f"{unit}.timer",
                    restarted=True, _if=timer.did_change)
