#!/usr/bin/env bash
# Compiles OTP's RFC 4006 dictionary (with diameterc) and the Erlang interop client, then
# runs it against a Tollgate Diameter server on 127.0.0.1:PORT.
# Usage: tests/interop/run-erlang-client.sh PORT
set -euo pipefail
port=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dicts=$(ls -d /usr/lib/erlang/lib/diameter-*/examples/dict | tail -n 1)
cd "$work"
cp "$dicts/rfc4005_nas.dia" "$dicts/rfc4006_cc.dia" .
# The example dictionaries inherit "common"; the base protocol's module is diameter_gen_base_rfc6733.
diameterc --inherits common/diameter_gen_base_rfc6733 rfc4005_nas.dia
erlc -W0 rfc4005_nas.erl
diameterc -i . --inherits common/diameter_gen_base_rfc6733 rfc4006_cc.dia
erlc -W0 rfc4006_cc.erl
erlc -W "$here/tollgate_cc_client.erl"
exec erl -noshell -pa "$work" -eval "tollgate_cc_client:main($port)"
