#!/usr/bin/env bash
# seed.sh -- fill fuzz/corpus/TARGET/ with the RFC 4475 torture messages and the
# INVITE fixture, each with an empty and a non-empty control prefix (see the
# input layout at the top of each target). The corpus is git-ignored.
# usage: fuzz/seed.sh   (env: SIPEDGE_REFERENCE_DIR, default ../shared beside the repo)
set -euo pipefail
cd "$(dirname "$0")"
ref="${SIPEDGE_REFERENCE_DIR:-$(cd ../.. && pwd)/shared}"
torture="$ref/sip-torture/rfc4475"
[ -d "$torture" ] || { echo "seed.sh: $torture is missing (set SIPEDGE_REFERENCE_DIR)" >&2; exit 2; }
mkdir -p corpus/message_roundtrip corpus/stream_framer
for f in "$torture"/*.dat ../shared/tests/fixtures/invite900.sip; do
  n=$(basename "$f")
  # message_roundtrip: k = data[0] % 16 control bytes, then the datagram.
  { printf '\x00'; cat "$f"; } > "corpus/message_roundtrip/$n.plain"
  { printf '\x04\x00\x01\x02\x03'; cat "$f"; } > "corpus/message_roundtrip/$n.edits"
  # stream_framer: 4 limit bytes, k = data[4] % 32 chunk sizes, then the stream
  # (the message twice, so a framed message is followed by another).
  { printf '\xff\x0f\x3f\xff\x00'; cat "$f" "$f"; } > "corpus/stream_framer/$n.whole"
  { printf '\xff\x0f\x3f\xff\x03\x07\x40\x01'; cat "$f" "$f"; } > "corpus/stream_framer/$n.chunks"
done
echo "seeded: $(ls corpus/message_roundtrip | wc -l) message_roundtrip, $(ls corpus/stream_framer | wc -l) stream_framer"
