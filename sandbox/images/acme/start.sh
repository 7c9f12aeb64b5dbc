#!/bin/sh
# challtestsrv answers DNS for the validation authority; the bench registers each
# target's name -> container address through its management API (port 8055).
set -eu
pebble-challtestsrv -defaultIPv4 "" -defaultIPv6 "" -dns01 127.0.0.1:8053 \
  -http01 "" -https01 "" -tlsalpn01 "" -management 0.0.0.0:8055 &
export PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0
exec pebble -config /etc/pebble/pebble.json -dnsserver 127.0.0.1:8053
