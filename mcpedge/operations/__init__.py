"""The bundle's pyinfra operations, one module per domain (as pyinfra's own ``pyinfra.operations``):

- :mod:`.nginx` (files rendered for the installed nginx), :mod:`.certbot` (a
  certificate), :mod:`.docker` (images and containers recreated only on a
  change), :mod:`.dsm` (the guard, DSM's scheduled tasks, the NAS pre-flight),
  :mod:`.preflight` (the Ubuntu pre-flight and its checks), :mod:`.secrets`
  (files holding secrets, never shown), :mod:`.verify` (the public endpoint).

Each operation is a small generator with a docstring of its arguments and an
example; each reads facts and yields commands only when something must change.
"""
