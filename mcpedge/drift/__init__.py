"""Drift check (and scheduled repair) of every host in an inventory.

    python -m mcpedge.drift [INVENTORY] [--report FILE] [--state-dir DIR]
    python -m mcpedge.drift [INVENTORY] --repair --state-dir DIR [--lock FILE]

The deploy runs in dry mode (``pyinfra INVENTORY deploy.py --dry``); every
operation that would change something is drift, except handlers (operations
with ``_if``: they only run after another operation changed). Exit codes, as
``terraform plan -detailed-exitcode``:

    0  no drift
    2  drift (with --repair: drift found, applied, and a re-check found none)
    1  error (a host unreachable, a failed operation, bad settings ...)
    75 --lock is held by another run: nothing was done

A short summary per host and resource goes to stdout; the JSON report
(``--report``, default ``drift-report.json``) lists, per drifted resource:
host, resource, kind (content, missing, mode, owner, link, directory,
package, service, certificate, ...), before/after sha256 and a unified diff.
Each host's public endpoint is verified as after an apply (``mcpedge.verify``;
setting ``<group>.verify``): a failing endpoint on a host without drift is an
error, beside drift it is reported and the repair's apply verifies again.
Secret values never appear: files written by ``secret_template`` are diffed
masked, and every known secret value left in the report is replaced by ``***``.

With ``--state-dir`` each host's settings digest and bundle revision are
recorded whenever it is found converged; a later change is *corrective* when
both are unchanged since (a hand edit was undone) and *intentional* when the
settings or the bundle changed (Puppet's distinction). ``--repair`` also keeps
a copy of every report with drift or an error under ``<state-dir>/reports/``
and runs the ``control.notify_command`` of the settings on a corrective
change or a failure.

The package: :mod:`.collect` (the dry run, observed from the inside, in a
child process), :mod:`.describe` (what one drifted operation would do; an
operation module can bring its own describer), :mod:`.report` (digests, the
JSON report, corrective or intentional), :mod:`.cli` (the command line, the
lock, check then repair).
"""
