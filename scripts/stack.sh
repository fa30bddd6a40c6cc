#!/usr/bin/env bash
# Starts the local stack (1 LB, 3 proxies, 1 sipmon) on loopback.
set -euo pipefail
echo "sipedge: the local stack is not assembled yet (see the open local-stack issue)."
exit 1
