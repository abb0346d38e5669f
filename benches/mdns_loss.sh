#!/bin/bash
# mDNS discovery under packet loss (docs/DISCOVERY.md, "Lost answers"). Needs root, `ip`
# and `nft`; all traffic stays inside the namespaces it makes (10.232/16) and removes.
#
# 100 `serve --advertise mdns` in 4 namespaces bridged to a fifth (the hub); each server
# namespace drops LOSS % of the mDNS packets in and out at random; `discover` runs ROUNDS
# times in the hub with each program of DISCOVER (interleaved), printing
# "<program> <servers found> <seconds>".
#
#   LOSS=10 ROUNDS=10 DISCOVER="old.exe target/release/pyme-stream" benches/mdns_loss.sh
set -euo pipefail
LOSS=${LOSS:-10}; ROUNDS=${ROUNDS:-10}
SERVE=${SERVE:-target/release/pyme-stream}; DISCOVER=${DISCOVER:-$SERVE}
T=pyme-ml$$; HUB=$T-hub; ROOTS=$(mktemp -d)
cleanup() {
  for ns in $HUB $T-s0 $T-s1 $T-s2 $T-s3; do ip netns pids $ns 2>/dev/null | xargs -r kill -9; done
  sleep 0.5
  for ns in $HUB $T-s0 $T-s1 $T-s2 $T-s3; do ip netns delete $ns 2>/dev/null || true; done
  rm -rf "$ROOTS"
}
trap cleanup EXIT
ip netns add $HUB; ip -n $HUB link set lo up; ip -n $HUB link add br0 type bridge
ip -n $HUB addr add 10.232.0.1/16 dev br0; ip -n $HUB link set br0 up
for g in 0 1 2 3; do
  ns=$T-s$g; ip netns add $ns; ip -n $ns link set lo up
  ip -n $HUB link add h$g type veth peer name s$g netns $ns
  ip -n $HUB link set h$g master br0; ip -n $HUB link set h$g up
  for i in $(seq 1 25); do ip -n $ns addr add 10.232.$((g+1)).$i/16 dev s$g; done
  ip -n $ns link set s$g up
  ip netns exec $ns nft -f - <<NFT
table inet loss {
 chain in {
  type filter hook input priority 0;
  udp dport 5353 numgen random mod 100 < $LOSS drop
 }
 chain out {
  type filter hook output priority 0;
  udp dport 5353 numgen random mod 100 < $LOSS drop
 }
}
NFT
done
for g in 0 1 2 3; do for i in $(seq 1 25); do
  ip netns exec $T-s$g "$SERVE" serve --bind 10.232.$((g+1)).$i --port 0 --root "$ROOTS/$g-$i" \
    --serverfilter LOSSX --advertise mdns >/dev/null 2>&1 &
done; done
sleep 8
for r in $(seq 1 "$ROUNDS"); do for d in $DISCOVER; do
  s=$(date +%s.%N)
  n=$(ip netns exec $HUB "$d" discover --serverfilter LOSSX --no-registry | wc -l)
  e=$(date +%s.%N)
  echo "$d $n $(python3 -c "print(round($e - $s, 2))")"
done; done
