#!/usr/bin/env bash
# Starts the local stack (1 LB, 3 proxies, 1 sipmon) on loopback; see
# deploy/stack/stack.sh. `--demo` also places calls and kills a proxy.
exec "$(dirname "$0")/../deploy/stack/stack.sh" "$@"
