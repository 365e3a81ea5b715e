# Closing is cheap: N connections of one uid are closed at once (abruptly, as a network
# failure would) while a backend pushes to another uid over the text port; prints how long
# pushd took to unbind them all and the push round trips before and during the storm.
#
#   pushd --ws-listen 127.0.0.1:17101 --text-listen 127.0.0.1:17102 --heartbeat 0 --ping-interval 0 &
#   python3 bench/close-storm.py 17101 17102 15000
#
# Loopback only; bounded: N connections, one storm, at most 60 s of waiting.
import socket, os, sys, time, base64, select, threading, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
ws_port, text_port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def frame(text):
    payload = text.encode(); mask = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
def connect(uid):
    s = socket.create_connection(("127.0.0.1", ws_port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf: buf += s.recv(4096)
    s.sendall(frame(uid))
    return s
t0 = time.time()
socks = [connect("many") for _ in range(n)]
probe = connect("probe")
time.sleep(1.0)
text = socket.create_connection(("127.0.0.1", text_port))
def rtt():
    t = time.perf_counter(); text.sendall(b'{"uid":"probe","m":1}\n'); r = text.recv(16); return (time.perf_counter() - t) * 1000, r
base = [rtt()[0] for _ in range(200)]
stop = False; during = []
def pusher():
    while not stop:
        during.append(rtt()[0])
th = threading.Thread(target=pusher); th.start()
t1 = time.perf_counter()
for s in socks:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
# wait until pushd has unbound all: the probe push count stays; poll `many` via text port transient push
while True:
    text2 = None
    time.sleep(0.05)
    if time.perf_counter() - t1 > 60: break
    # stop when a push to many answers fail/queued (no connection)
    try:
        c = socket.create_connection(("127.0.0.1", text_port)); c.sendall(b'{"uid":"many","transient":true}\n'); r = c.recv(16); c.close()
        if r != b"ok\n": break
    except Exception: pass
elapsed = time.perf_counter() - t1
stop = True; th.join()
during.sort(); base.sort()
print(f"n={n} all closed in {elapsed*1000:.0f} ms; probe rtt base p50 {base[len(base)//2]:.2f} ms max {base[-1]:.2f}; during the storm: {len(during)} pushes, p50 {during[len(during)//2]:.2f} ms, p99 {during[int(len(during)*0.99)]:.2f}, max {during[-1]:.2f} ms")
