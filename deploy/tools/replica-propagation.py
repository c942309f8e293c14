#!/usr/bin/env python3
"""Measures how long a configuration change made through control-plane replica A takes to be served by a node
that long-polls replica B (two real control-plane processes on one Postgres database, one real node).

    deploy/tools/replica-propagation.py [--bin-dir target/release] [--changes 50] [--replica-poll-ms 3600000]

Needs Postgres on 127.0.0.1:5432 (trust auth, user postgres) and `psql`. With the default --replica-poll-ms
(an hour) only the LISTEN/NOTIFY wake-up can deliver; pass e.g. 5000 to see the timer fallback alone by
comparison, which this script cannot switch off NOTIFY for (it reports whichever is first).
"""
import argparse, base64, http.client, json, os, secrets, socket, subprocess, sys, tempfile, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def psql(sql):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtc", sql], check=True)

def get(port, path, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    r = c.getresponse(); body = r.read(); c.close(); return r.status, body

def wait_ready(port, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            if get(port, "/readyz")[0] == 200: return
        except OSError: pass
        time.sleep(0.05)
    sys.exit(f"port {port} never became ready")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release"))
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--replica-poll-ms", default="3600000")
    ap.add_argument("--same-replica", action="store_true", help="baseline: the node polls A, where changes are made")
    a = ap.parse_args()
    db = f"switchyard_prop_{secrets.token_hex(4)}"
    psql(f'CREATE DATABASE "{db}"')
    tmp = tempfile.mkdtemp()
    alnum = lambda n: "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))
    op = "syop-" + alnum(43)
    env = dict(os.environ, SWITCHYARD_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}",
               SWITCHYARD_ENCRYPTION_KEY=base64.b64encode(os.urandom(32)).decode(),
               SWITCHYARD_NODE_TOKEN="synode-" + alnum(43), SWITCHYARD_BOOTSTRAP_OPERATOR_TOKEN=op,
               SWITCHYARD_CP_REPLICA_POLL_MS=a.replica_poll_ms, RUST_LOG="warn")
    procs = []
    try:
        pa, pb, pn = free_port(), free_port(), free_port()
        for port in (pa, pb):
            procs.append(subprocess.Popen([os.path.join(a.bin_dir, "switchyard-control-plane"), "serve"],
                         env=dict(env, SWITCHYARD_CP_LISTEN=f"127.0.0.1:{port}"), stdout=subprocess.DEVNULL))
            wait_ready(port)
        procs.append(subprocess.Popen([os.path.join(a.bin_dir, "switchyard-data-plane")], stdout=subprocess.DEVNULL,
                     env=dict(env, SWITCHYARD_LISTEN=f"127.0.0.1:{pn}", SWITCHYARD_CONTROL_PLANE_URL=f"http://127.0.0.1:{pa if a.same_replica else pb}",
                              SWITCHYARD_STATE_DIR=os.path.join(tmp, "node"))))
        wait_ready(pn)
        node = http.client.HTTPConnection("127.0.0.1", pn, timeout=10)
        admin = http.client.HTTPConnection("127.0.0.1", pa, timeout=10)
        def node_version():
            node.request("GET", "/readyz"); return json.loads(node.getresponse().read())["snapshot_version"]
        took = []
        for i in range(a.changes):
            before = node_version()
            t0 = time.perf_counter()
            admin.request("POST", "/api/v1/teams", body=json.dumps({"name": f"team {i}"}),
                          headers={"Authorization": f"Bearer {op}", "Content-Type": "application/json"})
            r = admin.getresponse(); r.read(); assert r.status == 201, r.status
            committed = time.perf_counter()
            while node_version() <= before:
                if time.perf_counter() - t0 > 30: sys.exit("the change never reached the node")
            took.append((time.perf_counter() - committed) * 1000)
        took.sort()
        q = lambda p: took[min(len(took) - 1, int(p * len(took)))]
        where = "A" if a.same_replica else "B"
        print(f"changes={len(took)} replica_poll_ms={a.replica_poll_ms} commit-on-A -> served-by-node-on-{where} ms: "
              f"p50={q(0.5):.1f} p90={q(0.9):.1f} max={took[-1]:.1f}")
    finally:
        for p in procs: p.terminate()
        for p in procs: p.wait(timeout=30)
        psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

if __name__ == "__main__":
    main()
