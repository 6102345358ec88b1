#!/bin/bash
# Usage: sudo scripts/bench-engines.sh ENGINE_A ENGINE_B [CORES]  (env: T=seconds, IPERF_ARGS="-b 1G" or "-u -l 64 -b 20M")
# ENGINE: uring | epoll | auto for uring-tunnel, or boringtun (boringtun-cli on PATH, 2 threads, configured with wg).
# One iperf3 run through two uring-tunnel processes in fresh netns (198.18.70.0/24 under, 100.64.70.0/24 inside);
# prints throughput, CPU of both tunnel processes (/proc/PID/stat) and of the host (/proc/stat), ping RTT and the
# shutdown counters (syscalls, sends, writes). Needs a release build: cargo build --release -p uring-tunnel.
set -u
BIN=${BIN:-$(dirname "$0")/../target/release/uring-tunnel}
EA=$1; EB=$2; CORES=${3:-1}; T=${T:-5}
ID=$$; A=ut-bench-$ID-a; B=ut-bench-$ID-b; D=/tmp/ut-bench-$ID; mkdir -p $D
cleanup() { [ -n "${PA:-}" ] && kill $PA 2>/dev/null; [ -n "${PB:-}" ] && kill $PB 2>/dev/null; [ -n "${PS:-}" ] && kill $PS 2>/dev/null; sleep 0.5; ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null; }
trap cleanup EXIT
ip netns add $A; ip netns add $B
ip link add vb${ID}a netns $A type veth peer name vb${ID}b netns $B
ip -n $A addr add 198.18.70.1/24 dev vb${ID}a; ip -n $A link set vb${ID}a up; ip -n $A link set lo up
ip -n $B addr add 198.18.70.2/24 dev vb${ID}b; ip -n $B link set vb${ID}b up; ip -n $B link set lo up
KA=$($BIN genkey); KB=$($BIN genkey); PA_=$(echo $KA | $BIN pubkey); PB_=$(echo $KB | $BIN pubkey)
cat > $D/ta.conf <<C
[Interface]
PrivateKey = $KA
ListenPort = 51820
Address = 100.64.70.1/24
[Peer]
PublicKey = $PB_
Endpoint = 198.18.70.2:51820
AllowedIPs = 100.64.70.2/32
C
cat > $D/tb.conf <<C
[Interface]
PrivateKey = $KB
ListenPort = 51820
Address = 100.64.70.2/24
[Peer]
PublicKey = $PA_
Endpoint = 198.18.70.1:51820
AllowedIPs = 100.64.70.1/32
C
# start NETNS IFNAME ENGINE CONF LOG PRIVATE PEERPUB ENDPOINT ALLOWED ADDR -> PID in $STARTED
start() {
  if [ "$3" = boringtun ]; then
    env -u WG_SUDO -u WG_UAPI_FD -u WG_TUN_FD -u WG_LOG_FILE -u WG_THREADS WG_LOG_LEVEL=error \
      ip netns exec $1 boringtun-cli -f --disable-drop-privileges --threads 2 $2 2>$5 & STARTED=$!
    sleep 0.5
    echo "$6" > $D/$2.key
    ip netns exec $1 wg set $2 private-key $D/$2.key listen-port 51820 peer $7 endpoint $8 allowed-ips $9
    ip -n $1 addr add ${10} dev $2; ip -n $1 link set $2 mtu 1420 up
    echo "boringtun $2 up" >> $5
  else
    ip netns exec $1 $BIN run --config $4 --interface $2 --engine $3 --cores $CORES 2>$5 & STARTED=$!
  fi
}
start $A tba$ID $EA $D/ta.conf $D/a.log "$KA" "$PB_" 198.18.70.2:51820 100.64.70.2/32 100.64.70.1/24; PA=$STARTED
start $B tbb$ID $EB $D/tb.conf $D/b.log "$KB" "$PA_" 198.18.70.1:51820 100.64.70.1/32 100.64.70.2/24; PB=$STARTED
sleep 1
ip netns exec $B iperf3 -s -1 -B 100.64.70.2 >/dev/null 2>&1 & PS=$!
sleep 0.3
RTT=$(ip netns exec $A ping -c 20 -i 0.05 -q 100.64.70.2 | tail -1)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
host() { awk '/^cpu /{print $2+$3+$4+$6+$7+$8}' /proc/stat; }
a0=$(cpu $PA); b0=$(cpu $PB); h0=$(host)
ip netns exec $A iperf3 -c 100.64.70.2 -t $T ${IPERF_ARGS:-} -J > $D/iperf.json
a1=$(cpu $PA); b1=$(cpu $PB); h1=$(host)
kill -TERM $PA $PB; wait $PA $PB; PA=; PB=
GBPS=$(python3 -c "import json;d=json.load(open('$D/iperf.json'));e=d['end'];print('%.2f Gb/s retr=%d bytes=%d'%(e['sum_received']['bits_per_second']/1e9,e['sum_sent'].get('retransmits',0),e['sum_received']['bytes']))")
BYTES=$(python3 -c "import json;d=json.load(open('$D/iperf.json'));print(d['end']['sum_received']['bytes'])")
echo "== $EA<->$EB cores=$CORES: $GBPS"
echo "   cpu tunnel A $(( (a1-a0) ))0 ms, B $(( (b1-b0) ))0 ms; host busy $(( (h1-h0) ))0 ms; per GB (A+B): $(python3 -c "print('%.2f CPU-s/GB'%(((($a1-$a0)+($b1-$b0))/100)/($BYTES/1e9)))") host $(python3 -c "print('%.2f CPU-s/GB'%((($h1-$h0)/100)/($BYTES/1e9)))")"
echo "   ping: $RTT"
grep -h "up:\|tun_rx=" $D/a.log $D/b.log | sed 's/^/   /'
