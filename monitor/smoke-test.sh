#!/bin/bash
# Smoke test: berth-monitor against a real runc, in a throwaway bundle and runc root.
# Needs root, runc, a static busybox and python3. Cleans up everything it creates.
#   monitor/smoke-test.sh            # all tests
#   monitor/smoke-test.sh tty oom    # some (test function names without the t_ prefix)
# Env: RUNC (default: runc on PATH), BUSYBOX (default: /bin/busybox).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
RUNC=${RUNC:-$(command -v runc)}
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ "$(id -u)" = 0 ] || { echo "smoke-test: needs root" >&2; exit 2; }
make -s -C "$here"

WORK=$(mktemp -d /tmp/bm-smoke.XXXXXX)
CG="berth-smoke-$$"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then      # cgroup v2
    MONCG="/sys/fs/cgroup/$CG-mon"
    OOM_FILE="/sys/fs/cgroup/$CG/{cid}/memory.events"
else                                                   # cgroup v1 / hybrid
    MONCG="/sys/fs/cgroup/pids/$CG-mon"
    OOM_FILE="/sys/fs/cgroup/memory/$CG/{cid}/memory.oom_control"
fi
export MON="$here/berth-monitor" RUNC WORK CG MONCG OOM_FILE

cleanup() {
    mountpoint -q "$WORK/small" 2>/dev/null && umount -l "$WORK/small"
    for id in $("$RUNC" --root "$WORK/runc" list -q 2>/dev/null); do
        "$RUNC" --root "$WORK/runc" delete --force "$id" || true
    done
    sleep 1 # monitors of killed containers finish their exit
    rm -rf "$WORK"
    for d in /sys/fs/cgroup/*/"$CG" /sys/fs/cgroup/*/"$CG-mon" /sys/fs/cgroup/"$CG" "$MONCG"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    return 0
}
trap cleanup EXIT

rootfs="$WORK/bundle/rootfs"
mkdir -p "$rootfs"/{bin,proc,sys,dev,tmp,etc} "$MONCG"
cp "$BUSYBOX" "$rootfs/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a" # the list names busybox itself
done
(cd "$WORK/bundle" && "$RUNC" spec)

python3 - "$@" <<'PY'
"""Smoke tests for berth-monitor against real runc. Run as root."""
import json, os, signal, socket, struct, subprocess, sys, time, glob, shutil

MON = os.environ["MON"]
T = os.environ["WORK"]
RUNC_ROOT = f"{T}/runc"
ROOTFS = f"{T}/bundle/rootfs"
CG = os.environ["CG"]
MONCG = os.environ["MONCG"]
RUNC = os.environ["RUNC"]
failures = []

def check(cond, what):
    print(("PASS " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)

def bundle(cid, args, terminal=False, mem=None, tweak=None):
    b = f"{T}/bundles/{cid}"
    os.makedirs(b, exist_ok=True)
    c = json.load(open(f"{T}/bundle/config.json"))
    c["root"] = {"path": ROOTFS, "readonly": True}
    c["process"]["args"] = args
    c["process"]["terminal"] = terminal
    c["process"]["oomScoreAdj"] = 0
    c["linux"]["cgroupsPath"] = f"/{CG}/{cid}"
    if mem:
        c["linux"].setdefault("resources", {})["memory"] = {"limit": mem}
    if tweak:
        tweak(c)
    json.dump(c, open(f"{b}/config.json", "w"))
    return b

def start(cid, args, terminal=False, stdin=False, mem=None, extra=(), tweak=None, log=None):
    b = bundle(cid, args, terminal, mem, tweak)
    st = f"{T}/state/{cid}"
    os.makedirs(st, exist_ok=True)
    os.makedirs(f"{T}/logs", exist_ok=True)
    r, w = os.pipe()
    cmd = [MON, "run", "--id", cid, "--bundle", b, "--runtime", RUNC,
           "--runtime-root", RUNC_ROOT, "--state-dir", st, "--log-path", log or f"{T}/logs/{cid}.log",
           "--oom-file", os.environ["OOM_FILE"].format(cid=cid),
           "--cgroup-procs", f"{MONCG}/cgroup.procs", "--sync-fd", str(w)]
    if terminal: cmd.append("--terminal")
    if stdin: cmd.append("--stdin")
    cmd += list(extra)
    p = subprocess.Popen(cmd, pass_fds=(w,), stdin=subprocess.DEVNULL)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk: break
        data += chunk
    os.close(r)
    rc = p.wait()
    res = json.loads(data) if data else None
    return res, rc, st

def ctl_conn(st):
    s = socket.socket(socket.AF_UNIX); s.connect(f"{st}/ctl.sock"); return s

NOTES = {}  # ctl socket -> number of unsolicited "!event" lines seen

def ctl_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c: return None
        buf += c
    return buf.decode().rstrip("\n")

def ctl(s, line):
    """One request, its reply; notifications ('!...') in between are counted, not replies."""
    s.sendall(line.encode() + b"\n")
    while True:
        r = ctl_line(s)
        if r is None or not r.startswith("!"): return r
        NOTES[s] = NOTES.get(s, 0) + 1

def wait_note(s, timeout=2.0):
    """Waits for an unsolicited !event line (or finds one already counted)."""
    if NOTES.get(s, 0) > 0:
        NOTES[s] -= 1; return "!event"
    s.settimeout(timeout)
    try:
        r = ctl_line(s)
    except socket.timeout:
        r = None
    s.settimeout(None)
    return r

def wait_eof(s, timeout=15):
    s.settimeout(timeout)
    try:
        while s.recv(4096): pass
        return True
    except socket.timeout:
        return False

def exit_json(st):
    return json.load(open(f"{st}/exit.json"))

def log_records(cid, path=None):
    recs = []
    for line in open(path or f"{T}/logs/{cid}.log", "rb").read().split(b"\n")[:-1]:
        ts, stream, tag, text = line.split(b" ", 3) if line.count(b" ") >= 3 else (line.split(b" ") + [b""])[:4]
        recs.append((ts.decode(), stream.decode(), tag.decode(), text))
    return recs

def attach(st):
    s = socket.socket(socket.AF_UNIX); s.connect(f"{st}/attach.sock"); return s

def read_frames(s, timeout=10):
    s.settimeout(timeout); data = b""
    try:
        while True:
            c = s.recv(65536)
            if not c: break
            data += c
    except socket.timeout:
        pass
    frames = []
    while len(data) >= 8:
        stream, size = data[0], struct.unpack(">I", data[4:8])[0]
        frames.append((stream, data[8:8 + size])); data = data[8 + size:]
    return frames, data

def run_simple(cid, args, **kw):
    res, rc, st = start(cid, args, **kw)
    s = ctl_conn(st)
    a = ctl(s, "start")
    check(a == "ok", f"{cid}: start -> {a}")
    check(wait_eof(s), f"{cid}: ctl EOF on exit")
    return res, st

# ---------------------------------------------------------------------------------------
def ours_in(pid):
    """fd targets of the monitor that must not show up in another process."""
    out = {}
    for f in os.listdir(f"/proc/{pid}/fd"):
        try: out[f] = os.readlink(f"/proc/{pid}/fd/{f}")
        except OSError: pass
    return out

def t_echo():
    res, rc, st = start("echo", ["sh", "-c", "echo hello; echo err >&2; printf partial; ls /proc/self/fd | tr '\\n' ' '; echo"])
    check(rc == 0 and res["ok"] is True and res["pid"] > 0 and res["monitorPid"] > 0, f"echo: sync {res} rc={rc}")
    mpid = res["monitorPid"]
    check(os.path.exists(f"{st}/monitor.pid") and int(open(f"{st}/monitor.pid").read()) == mpid, "echo: monitor.pid written")
    stat = open(f"/proc/{mpid}/stat").read().rsplit(")", 1)[1].split()
    check(int(stat[3]) != os.getsid(0) and int(stat[2]) != os.getpgid(0) and int(stat[1]) != os.getpid(), f"echo: monitor in own session, not our child (ppid={stat[1]} pgrp={stat[2]} sid={stat[3]} pid={mpid})")
    adj = open(f"/proc/{mpid}/oom_score_adj").read().strip()
    check(adj == "-999" or "oom_score_adj: Permission denied" in open(f"{st}/monitor.log").read(), f"echo: monitor oom_score_adj -999 (or EPERM logged without CAP_SYS_RESOURCE): {adj}")
    check(str(mpid) in open(f"{MONCG}/cgroup.procs").read().split(), "echo: monitor joined --cgroup-procs")
    fds = sorted(os.listdir(f"/proc/{mpid}/fd"), key=int)
    check(all(int(f) > 2 or os.readlink(f"/proc/{mpid}/fd/{f}") == "/dev/null" for f in fds), "echo: monitor fds 0-2 on /dev/null")
    cpid = res["pid"]
    cfds = ours_in(cpid)
    mfds = ours_in(mpid)
    mine = {v for f, v in mfds.items() if int(f) > 2}
    leaked = {f: v for f, v in cfds.items() if int(f) > 2 and v in mine}
    check(not leaked, f"echo: runc init holds none of the monitor's fds beyond 0-2 ({cfds} vs {mfds})")
    s = ctl_conn(st)
    check(ctl(s, "bogus") == "error unknown command", "echo: unknown command")
    check(ctl(s, "resize 10 10") == "error no terminal", "echo: resize without terminal")
    check(ctl(s, "start") == "ok", "echo: start ok")
    check(ctl(s, "start") == "ok", "echo: repeated start ok")
    check(wait_eof(s), "echo: ctl EOF")
    ej = exit_json(st)
    check(ej["exitCode"] == 0 and ej["signal"] == 0 and ej["oomKilled"] is False and ej["pid"] == cpid, f"echo: exit.json {ej}")
    check(len(ej["finishedAt"]) == 30 and ej["finishedAt"].endswith("Z"), "echo: finishedAt format")
    recs = log_records("echo")
    got = [(r[1], r[2], r[3]) for r in recs]
    check(("stdout", "F", b"hello") in got and ("stderr", "F", b"err") in got, f"echo: CRI F records {got}")
    check(any(r[0] == "stdout" and r[2].startswith(b"partial") for r in got), "echo: unterminated chunk logged")
    fdline = [r[2] for r in got if b"0 1 2" in r[2]]
    check(fdline and fdline[0].split(b"0 1 2")[1].split() == [b"3"], f"echo: no leaked fds in container: {fdline}")
    check(not os.path.exists(f"{st}/ctl.sock") and not os.path.exists(f"{st}/attach.sock") and not os.path.exists(f"{st}/monitor.pid"), "echo: sockets + monitor.pid removed")
    def gone():
        try: return open(f"/proc/{mpid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError: return True
    for _ in range(40):
        if gone(): break
        time.sleep(0.05)
    check(gone(), "echo: monitor gone")

def t_exit3():
    res, st = run_simple("exit3", ["sh", "-c", "exit 3"])
    ej = exit_json(st)
    check(ej["exitCode"] == 3 and ej["signal"] == 0, f"exit3: {ej}")

def t_kill9():
    res, rc, st = start("kill9", ["sleep", "100"])
    s = ctl_conn(st)
    check(ctl(s, "start") == "ok", "kill9: start")
    check(ctl(s, "kill 0") == "error invalid signal", "kill9: invalid signal")
    check(ctl(s, "kill x") == "error invalid arguments", "kill9: invalid args")
    check(ctl(s, "kill 9") == "ok", "kill9: kill 9 ok")
    check(wait_eof(s), "kill9: ctl EOF")
    ej = exit_json(st)
    check(ej["exitCode"] == 137 and ej["signal"] == 9, f"kill9: {ej}")

def t_attach():
    res, rc, st = start("attach", ["sh", "-c", "sleep 0.5; echo out; echo err >&2; printf 'x%.0s' $(seq 1 20000); echo"])
    a = attach(st)
    time.sleep(0.1)
    s = ctl_conn(st)
    check(ctl(s, "start") == "ok", "attach: start")
    frames, rest = read_frames(a)
    check(rest == b"", "attach: frames consumed exactly")
    out = b"".join(d for k, d in frames if k == 1)
    err = b"".join(d for k, d in frames if k == 2)
    check(out == b"out\n" + b"x" * 20000 + b"\n" and err == b"err\n", f"attach: framed out={out[:20]!r}... err={err!r}")
    check(wait_eof(s), "attach: ctl EOF")
    recs = [r for r in log_records("attach") if r[1] == "stdout"]
    body = b""
    for r in recs:
        body += r[3] + (b"\n" if r[2] == "F" else b"")
    check(body == out, "attach: log reassembles to stdout")
    check(all(len(r[3]) <= 16384 for r in recs), "attach: records <= 16 KiB")
    check(any(r[2] == "P" for r in recs), "attach: the 20000-byte line has P records")

def t_longline():
    # one write of a 40000-byte line: exact 16 KiB split
    res, rc, st = start("longline", ["sh", "-c", "x=$(printf 'a%.0s' $(seq 1 40000)); echo \"$x\""])
    s = ctl_conn(st); ctl(s, "start"); wait_eof(s)
    recs = [r for r in log_records("longline") if r[1] == "stdout"]
    sizes = [(r[2], len(r[3])) for r in recs]
    body = b"".join(r[3] for r in recs)
    check(body == b"a" * 40000 and recs[-1][2] == "F" and all(n <= 16384 for _, n in sizes), f"longline: {sizes}")

def t_stdin():
    res, rc, st = start("stdin", ["cat"], stdin=True)
    a = attach(st)
    s = ctl_conn(st)
    check(ctl(s, "start") == "ok", "stdin: start")
    a.sendall(b"hello stdin\n")
    a.shutdown(socket.SHUT_WR)
    frames, rest = read_frames(a)
    check(frames == [(1, b"hello stdin\n")], f"stdin: echoed {frames}")
    check(wait_eof(s), "stdin: ctl EOF after stdin close")
    ej = exit_json(st)
    check(ej["exitCode"] == 0, f"stdin: {ej}")

def t_stdin_big():
    # 4 MiB through stdin -> cat -> stdout while the attach client reads slowly at first
    res, rc, st = start("stdinbig", ["sh", "-c", "cat | wc -c"], stdin=True)
    a = attach(st)
    s = ctl_conn(st); ctl(s, "start")
    a.setblocking(True)
    a.sendall(b"z" * (4 << 20))
    a.shutdown(socket.SHUT_WR)
    frames, rest = read_frames(a)
    out = b"".join(d for k, d in frames if k == 1)
    check(out.strip() == str(4 << 20).encode(), f"stdinbig: wc says {out!r}")
    wait_eof(s)

def t_flow():
    # a non-reading attach client pauses output; kill during flush answers "error exited"
    res, rc, st = start("flow", ["sh", "-c", "head -c 3000000 /dev/zero; sleep 100"])
    a = attach(st)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s = ctl_conn(st); ctl(s, "start")
    time.sleep(1.0)
    size1 = os.path.getsize(f"{T}/logs/flow.log")
    time.sleep(0.5)
    size2 = os.path.getsize(f"{T}/logs/flow.log")
    check(size1 == size2 and size1 < 3000000, f"flow: output paused at log size {size1}")
    check(ctl(s, "kill 9") == "ok", "flow: kill")
    time.sleep(0.3)
    r = ctl(s, "kill 9")
    check(r == "error exited", f"flow: kill after reap -> {r}")
    t0 = time.time()
    check(wait_eof(s), "flow: monitor exits despite stuck client")
    check(time.time() - t0 < 4, f"flow: bounded flush ({time.time() - t0:.1f}s)")
    a.close()

def t_flow_resume():
    # a slow but reading client: everything arrives, in order, log complete
    res, rc, st = start("flowres", ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' b; echo"])
    a = attach(st)
    s = ctl_conn(st); ctl(s, "start")
    time.sleep(1.0)
    frames, rest = read_frames(a)
    out = b"".join(d for k, d in frames if k == 1)
    check(out == b"b" * 3000000 + b"\n", f"flowres: attach got {len(out)} bytes")
    wait_eof(s)
    body = b"".join(r[3] for r in log_records("flowres") if r[1] == "stdout")
    check(body == b"b" * 3000000, f"flowres: log got {len(body)} bytes")

def t_terminal():
    res, rc, st = start("tty", ["sh"], terminal=True, stdin=True)
    check(res["ok"], f"tty: sync {res}")
    check(not os.path.exists(f"{st}/console.sock"), "tty: console.sock removed")
    s = ctl_conn(st)
    a = attach(st)
    check(ctl(s, "start") == "ok", "tty: start")
    check(ctl(s, "resize 30 100") == "ok", "tty: resize")
    a.sendall(b"stty size; tty; exit 7\n")
    a.settimeout(10); data = b""
    try:
        while True:
            c = a.recv(4096)
            if not c: break
            data += c
    except socket.timeout:
        pass
    check(b"30 100" in data and b"/dev/pts/" in data and data[:1] != b"\x01", f"tty: raw output {data!r}")
    check(wait_eof(s), "tty: ctl EOF")
    ej = exit_json(st)
    check(ej["exitCode"] == 7, f"tty: {ej}")
    recs = log_records("tty")
    check(all(r[1] == "stdout" for r in recs) and any(b"30 100" in r[3] for r in recs), "tty: log records stdout")

def t_reopen():
    res, rc, st = start("reopen", ["sh", "-c", "echo one; sleep 1; echo two"])
    s = ctl_conn(st); ctl(s, "start")
    time.sleep(0.5)
    os.rename(f"{T}/logs/reopen.log", f"{T}/logs/reopen.log.1")
    check(ctl(s, "reopen") == "ok", "reopen: ok")
    wait_eof(s)
    old = [r[3] for r in log_records(None, f"{T}/logs/reopen.log.1")]
    new = [r[3] for r in log_records("reopen")]
    check(old == [b"one"] and new == [b"two"], f"reopen: old={old} new={new}")

def t_oom():
    res, rc, st = start("oom", ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a)"], mem=32 << 20)
    s = ctl_conn(st); ctl(s, "start"); wait_eof(s, 30)
    ej = exit_json(st)
    check(ej["oomKilled"] is True and ej["signal"] == 9, f"oom: {ej}")

def t_nonexist():
    res, rc, st = start("nonexist", ["nonexist"])
    check(rc == 0 and res["ok"] is False and "executable file not found" in res["error"] and '"nonexist"' in res["error"], f"nonexist: {res}")
    time.sleep(0.2)
    check(not os.path.exists(f"{st}/ctl.sock") and not os.path.exists(f"{st}/monitor.pid"), "nonexist: cleaned up")
    ls = subprocess.run([RUNC, "--root", RUNC_ROOT, "list", "-q"], capture_output=True, text=True).stdout.split()
    check("nonexist" not in ls, "nonexist: runc state deleted")

def t_dup_id():
    # a second monitor for a live id fails without touching the first one
    res2, rc2, st2 = start("dup", ["sleep", "100"])
    res3, rc3, st3 = start("dup", ["sleep", "100"])
    check(res3["ok"] is False and "exist" in res3["error"], f"dup id: {res3}")
    check(os.path.exists(f"{st2}/ctl.sock") and os.path.exists(f"{st2}/monitor.pid"), "dup id: failed monitor left the live one's files alone")
    s = ctl_conn(st2); ctl(s, "kill 9"); check(wait_eof(s), "dup: killed before start, monitor exits")
    ej = exit_json(st2)
    check(ej["signal"] == 9, f"dup: {ej}")

def t_drain_bound():
    # no pid namespace: a leaked background process keeps stdout open after init exits
    def no_pidns(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
    res, rc, st = start("leak", ["sh", "-c", "sleep 30 & echo bye; exit 4"], tweak=no_pidns)
    check(res["ok"], f"leak: {res}")
    s = ctl_conn(st); ctl(s, "start")
    t0 = time.time()
    check(wait_eof(s), "leak: monitor exits")
    dt = time.time() - t0
    check(1.8 < dt < 5, f"leak: drain bounded ({dt:.1f}s)")
    check(exit_json(st)["exitCode"] == 4, "leak: exit 4")
    check(b"output still open" in open(f"{st}/monitor.log", "rb").read(), "leak: logged drain give-up")
    check([r[3] for r in log_records("leak")] == [b"bye"], "leak: log")

def t_exec_tty():
    res, rc, st = start("exectty", ["sleep", "100"])
    s = ctl_conn(st); ctl(s, "start")
    c = json.load(open(f"{T}/bundles/exectty/config.json"))["process"]
    c["terminal"] = True
    c["args"] = ["sh", "-c", "read x; stty size; echo got $x; tty; exit 5"]
    json.dump(c, open(f"{T}/exec-process.json", "w"))
    cr, cw = os.pipe()
    p = subprocess.Popen([MON, "exec-tty", "--id", "exectty", "--runtime", RUNC,
                          "--runtime-root", RUNC_ROOT, "--process", f"{T}/exec-process.json",
                          "--ctl-fd", str(cr)], pass_fds=(cr,), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(cr)
    os.write(cw, b"resize 40 120\n")
    time.sleep(0.5)
    p.stdin.write(b"hi\n"); p.stdin.flush()
    out, err = p.communicate(timeout=15)
    check(p.returncode == 5 and b"40 120" in out and b"got hi" in out and b"/dev/pts/" in out, f"exec-tty: rc={p.returncode} out={out!r} err={err!r}")
    os.close(cw)
    # failing exec: runc's status and message
    c["args"] = ["nonexist"]
    json.dump(c, open(f"{T}/exec-process.json", "w"))
    p = subprocess.run([MON, "exec-tty", "--id", "exectty", "--runtime", RUNC,
                        "--runtime-root", RUNC_ROOT, "--process", f"{T}/exec-process.json"],
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=15)
    check(p.returncode != 0 and b"executable file not found" in p.stderr, f"exec-tty nonexist: rc={p.returncode} err={p.stderr!r}")
    check(not glob.glob("/tmp/berth-exec-*"), "exec-tty: temp dir removed")
    ctl(s, "kill 9"); wait_eof(s)

def t_attach_disconnect():
    # clients that vanish mid-stream must not hurt the monitor
    res, rc, st = start("disc", ["sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); sleep 0.005; done"])
    a = attach(st); b = attach(st)
    s = ctl_conn(st); ctl(s, "start")
    time.sleep(0.2); a.close()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); b.close()  # RST
    check(wait_eof(s), "disc: monitor survived disconnects")
    check(exit_json(st)["exitCode"] == 0, "disc: exit 0")
    recs = [r for r in log_records("disc")]
    check(len(recs) == 200, f"disc: log has {len(recs)} lines")

def t_ctl_misc():
    res, rc, st = start("ctlmisc", ["sleep", "100"])
    mpid = res["monitorPid"]
    os.kill(mpid, signal.SIGTERM); os.kill(mpid, signal.SIGHUP); time.sleep(0.2)
    check(open(f"/proc/{mpid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z", "ctlmisc: SIGTERM/SIGHUP ignored")
    s = ctl_conn(st)
    s.sendall(b"start\nresize 1 1\r\nkill\n\n" + b"x" * 3000 + b"\nreopen\n")
    s.settimeout(5); data = b""
    while data.count(b"\n") < 6:
        data += s.recv(4096)
    check(data.decode().split("\n")[:6] == ["ok", "error no terminal", "error invalid arguments",
          "error unknown command", "error line too long", "ok"], f"ctlmisc: pipelined requests {data!r}")
    s2 = ctl_conn(st); s2.shutdown(socket.SHUT_WR)
    check(ctl(s, "kill 9") == "ok", "ctlmisc: kill 9")
    check(wait_eof(s) and wait_eof(s2), "ctlmisc: half-closed ctl client also gets EOF")

def t_sync_fd_stdout():
    b = bundle("syncout", ["true"])
    st = f"{T}/state/syncout"; os.makedirs(st, exist_ok=True)
    p = subprocess.run([MON, "run", "--id", "syncout", "--bundle", b, "--runtime", RUNC,
                        "--runtime-root", RUNC_ROOT, "--state-dir", st, "--log-path",
                        f"{T}/logs/syncout.log", "--sync-fd", "1"], capture_output=True, timeout=20)
    res = json.loads(p.stdout)
    check(res["ok"] and p.returncode == 0, f"syncout: report on fd 1 {res}")
    s = ctl_conn(st); ctl(s, "start"); check(wait_eof(s), "syncout: exits")

def t_stdin_epipe():
    res, rc, st = start("epipe", ["sh", "-c", "exec 0<&-; sleep 1; echo done"], stdin=True)
    a = attach(st); s = ctl_conn(st); ctl(s, "start")
    a.sendall(b"y" * (1 << 20))
    frames, rest = read_frames(a)
    check(frames == [(1, b"done\n")], f"epipe: container closed stdin, monitor fine {frames}")
    check(wait_eof(s) and exit_json(st)["exitCode"] == 0, "epipe: clean exit")

def t_exec_tty_more():
    res, rc, st = start("exec2", ["sleep", "100"])
    s = ctl_conn(st); ctl(s, "start")
    c = json.load(open(f"{T}/bundles/exec2/config.json"))["process"]
    c["terminal"] = True
    def xt(args, **kw):
        c["args"] = args
        json.dump(c, open(f"{T}/p2.json", "w"))
        return subprocess.Popen([MON, "exec-tty", "--id", "exec2", "--runtime", RUNC,
                                 "--runtime-root", RUNC_ROOT, "--process", f"{T}/p2.json"], **kw)
    p = xt(["sh", "-c", "kill -9 $$"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    check(p.wait(timeout=15) == 137, f"exec2: killed exec'd process -> {p.returncode}")
    p = xt(["sh", "-c", "trap 'exit 42' HUP; while :; do echo tick; sleep 0.1; done"],
           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    p.stdout.read(4); p.stdout.close()
    check(p.wait(timeout=10) in (42, 129), f"exec2: broken stdout hangs up the pty -> {p.returncode}")
    ctl(s, "kill 9"); wait_eof(s)


# --- log rotation, drops, events, OOM -------------------------------------------------
import re, threading

class Reader:
    """Collects a stream (an attach socket's frames, or a raw fd) in a thread. For
    attach, .out is the frames' payload so far and .tail its last 64 KiB."""
    def __init__(self, sock=None, fd=None):
        self.sock, self.fd, self.eof = sock, fd, False
        self.raw, self.chunks, self.n, self.tail = b"", [], 0, b""
        self.cv = threading.Condition()
        self.t = threading.Thread(target=self._run, daemon=True); self.t.start()
    def _run(self):
        while True:
            try:
                c = self.sock.recv(1 << 20) if self.sock else os.read(self.fd, 1 << 20)
            except OSError:
                c = b""
            with self.cv:
                if not c:
                    self.eof = True; self.cv.notify_all(); return
                if self.sock:  # unframe
                    self.raw += c; c = b""
                    while len(self.raw) >= 8:
                        n = struct.unpack(">I", self.raw[4:8])[0]
                        if len(self.raw) < 8 + n: break
                        c += self.raw[8:8 + n]; self.raw = self.raw[8 + n:]
                self.chunks.append(c); self.n += len(c)
                self.tail = (self.tail + c)[-65536:]
                self.cv.notify_all()
    @property
    def out(self):
        with self.cv:
            return b"".join(self.chunks)
    def wait(self, pred, timeout):
        end = time.time() + timeout
        with self.cv:
            while not pred(self) and not self.eof and time.time() < end:
                self.cv.wait(max(0.01, end - time.time()))
            return pred(self)

def read_or_empty(path):
    # The live file is briefly absent while the monitor rotates it (rename, then a new one).
    try:
        return open(path, "rb").read()
    except FileNotFoundError:
        return b""

def wait_until(pred, timeout, step=0.02):
    end = time.time() + timeout
    while time.time() < end:
        if pred(): return True
        time.sleep(step)
    return pred()

def events(st):
    try:
        return [json.loads(l) for l in open(f"{st}/events.jsonl").read().splitlines()]
    except FileNotFoundError:
        return []

def stats(s):
    r = ctl(s, "stats")
    return json.loads(r[3:]) if r and r.startswith("ok {") else {"reply": r}

def settled_stats(s, quiet=0.3, timeout=10):
    """stats once the writer is done with what it had (nothing changed for `quiet` s)."""
    prev, since, end = None, time.time(), time.time() + timeout
    while time.time() < end:
        cur = stats(s)
        if cur != prev: prev, since = cur, time.time()
        elif time.time() - since >= quiet: break
        time.sleep(0.05)
    return prev

def rotated(log):
    """{seq: [paths]} of <log>.N and <log>.N.gz."""
    out = {}
    for f in glob.glob(glob.escape(log) + ".*"):
        m = re.fullmatch(re.escape(log) + r"\.(\d+)(\.gz)?", f)
        if m: out.setdefault(int(m.group(1)), []).append(f)
    return out

CRI = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [PF] ")

def t_rotate():
    d = f"{T}/rot"; os.makedirs(d, exist_ok=True)
    log, N, MAX = f"{d}/c.log", 3000, 4096
    res, rc, st = start("rot", ["sh", "-c", f"seq 1 {N}; read x; exit 0"], stdin=True, log=log,
                        extra=["--log-max-size", str(MAX), "--log-max-files", "3"])
    a = attach(st); s = ctl_conn(st)
    check(ctl(s, "start") == "ok", "rotate: start")
    check(wait_until(lambda: read_or_empty(log).endswith(f" F {N}\n".encode()), 10), "rotate: last line reached the live file")
    sts = stats(s)
    rot = rotated(log); seqs = sorted(rot)
    check(len(rot) == 2 and seqs[1] == seqs[0] + 1 and seqs[1] == sts.get("logRotations"), f"rotate: 2 rotated + live remain, newest seq = rotations ({seqs}, {sts})")
    files = [rot[q][0] for q in seqs] + [log]
    sizes = [os.path.getsize(f) for f in files]
    check(all(0 < n <= MAX for n in sizes), f"rotate: no file exceeds max-size {sizes}")
    nums = []
    for f in files:
        for r in log_records(None, f):
            nums.append(int(r[3]) if r[2] == "F" and r[3].isdigit() else -1)
    check(nums and nums[-1] == N and nums == list(range(nums[0], N + 1)), f"rotate: surviving files in seq order are one run of lines ..{nums[-3:]} from {nums[:1]}")
    ev = [e for e in events(st) if e["type"] == "log-rotated"]
    check([e["seq"] for e in ev] == list(range(1, sts.get("logRotations", 0) + 1)) and all(e["time"].endswith("Z") for e in ev), f"rotate: a log-rotated event per rotation, seqs increasing ({len(ev)})")
    check(sts.get("logBytes", 0) > N * 40 and sts.get("logDroppedBytes") == 0, f"rotate: stats {sts}")
    a.shutdown(socket.SHUT_WR)
    check(wait_eof(s) and exit_json(st)["exitCode"] == 0, "rotate: exit on stdin EOF")
    # A compressor took the newest one; an older one exists in both forms.
    R = seqs[1]
    os.rename(rot[R][0], f"{log}.{R}.gz")
    shutil.copy(rot[R - 1][0], f"{log}.{R - 1}.gz")
    # Restart on the same log path: the sequence goes on after the highest N (.gz too),
    # a record larger than max-size goes alone into a fresh file, and pruning removes
    # both forms of an N.
    res, rc, st = start("rot2", ["sh", "-c", "echo a; x=$(printf 'L%.0s' $(seq 1 6000)); echo \"$x\"; echo b"],
                        log=log, extra=["--log-max-size", str(MAX), "--log-max-files", "3"])
    s = ctl_conn(st); ctl(s, "start"); wait_eof(s)
    rot = rotated(log); seqs = sorted(rot)
    check(len(rot) == 2 and seqs[0] > R and all(len(v) == 1 for v in rot.values()), f"rotate: after restart the seqs continue after {R}: {rot}")
    check(not any(os.path.exists(f"{log}.{q}{z}") for q in (R - 1, R) for z in ("", ".gz")), "rotate: pruned N and N.gz together")
    ev = [e["seq"] for e in events(st) if e["type"] == "log-rotated"]
    check(ev and ev[0] == R + 1 and ev == list(range(R + 1, R + 1 + len(ev))), f"rotate: restart events {ev}")
    big = log_records(None, rot[seqs[1]][0])
    check(len(big) == 1 and big[0][3] == b"L" * 6000 and os.path.getsize(rot[seqs[1]][0]) > MAX, "rotate: an oversized record alone in its file")
    check([r[3] for r in log_records(None, log)] == [b"b"], "rotate: live file after it")

def t_drop_full():
    d = f"{T}/small"; os.makedirs(d, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "berth-smoke", d], check=True)
    try:
        open(f"{d}/filler", "wb").write(b"f" * (64 << 10))
        log = f"{d}/full.log"
        res, rc, st = start("full", ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' z | fold -w 99; echo burst-done >&2; read x; echo after; read y; exit 3"],
                            stdin=True, log=log)
        a = attach(st); s = ctl_conn(st); rd = Reader(a)
        t0 = time.time()
        check(ctl(s, "start") == "ok", "full: start")
        check(rd.wait(lambda r: b"burst-done" in r.tail, 10), "full: output burst done")
        dt = time.time() - t0
        check(dt < 5, f"full: container not held up by the full disk ({dt:.2f}s)")
        sts = settled_stats(s)
        check(sts.get("logDroppedBytes", 0) > 2000000 and sts.get("logBytes", 0) < 256 << 10, f"full: stats count the drops {sts}")
        check(not [e for e in events(st) if e["type"] == "log-dropped"], "full: no log-dropped event while the disk is still full")
        os.remove(f"{d}/filler")
        a.sendall(b"go\n")
        check(rd.wait(lambda r: b"after" in r.tail, 5), "full: attach unaffected")
        check(wait_note(s) == "!event", "full: !event notification")
        check(wait_until(lambda: read_or_empty(log).endswith(b" stdout F after\n"), 3), "full: output logged again")
        lines = open(log, "rb").read().split(b"\n")[:-1]
        m = re.search(rb" stderr F \[berth-monitor\] dropped (\d+) bytes of output \(reason: disk full\)$", lines[-2])
        check(m is not None and CRI.match(lines[-2]), f"full: marker before the next output: {lines[-2][:120]!r}")
        n = int(m.group(1)) if m else -1
        ev = [e for e in events(st) if e["type"] == "log-dropped"]
        check(len(ev) == 1 and ev[0]["bytes"] == n and ev[0]["reason"] == "disk full", f"full: log-dropped event {ev} (marker {n})")
        sts = stats(s)
        check(sts.get("logDroppedBytes") == n, f"full: stats dropped = marker ({sts}, {n})")
        bad = [l[:60] for l in lines if not CRI.match(l)]
        check(len(bad) <= 1, f"full: the file stays one record per line (cut short: {bad})")
        a.sendall(b"y\n")
        check(wait_eof(s), "full: exit")
        check(exit_json(st)["exitCode"] == 3, f"full: exit code {exit_json(st)}")
        # Still full when the container exits: the pending drops are reported then.
        res, rc, st = start("full2", ["sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' q | fold -w 99"], log=f"{d}/full2.log")
        s = ctl_conn(st); t0 = time.time(); ctl(s, "start")
        check(wait_eof(s, 10) and time.time() - t0 < 5 and exit_json(st)["exitCode"] == 0, "full2: quick exit")
        ev = [e for e in events(st) if e["type"] == "log-dropped"]
        check(len(ev) == 1 and ev[0]["reason"] == "disk full" and ev[0]["bytes"] > 900000, f"full2: log-dropped at exit {ev}")
    finally:  # the last monitor may still be on its way out, holding its log open
        for _ in range(40):
            if subprocess.run(["umount", d], stderr=subprocess.DEVNULL).returncode == 0: break
            time.sleep(0.05)
        else:
            subprocess.run(["umount", "-l", d])

def t_stall():
    # The log "disk" is a FIFO nobody reads: the writer blocks in write().
    log = f"{T}/logs/stall.log"; os.makedirs(f"{T}/logs", exist_ok=True); os.mkfifo(log)
    rfd = os.open(log, os.O_RDONLY | os.O_NONBLOCK)
    try:
        res, rc, st = start("stall", ["sh", "-c", "head -c 4000000 /dev/zero | tr '\\0' s | fold -w 99; echo burst-done >&2; read x; echo after; read y"],
                            stdin=True, log=log, extra=["--log-buffer", "262144", "--log-stall-ms", "300"])
        a = attach(st); s = ctl_conn(st); rd = Reader(a)
        t0 = time.time()
        ctl(s, "start")
        check(rd.wait(lambda r: b"burst-done" in r.tail, 10), "stall: output burst done")
        dt = time.time() - t0
        check(dt < 1.5, f"stall: container held up about the stall bound only ({dt:.2f}s)")
        check(rd.n >= 4040000, f"stall: attach got everything ({rd.n})")
        sts = stats(s)
        check(sts.get("logDroppedBytes", 0) > 3000000, f"stall: drops counted {sts}")
        check(b"dropping output" in open(f"{st}/monitor.log", "rb").read(), "stall: logged")
        os.set_blocking(rfd, True)
        fifo = Reader(fd=rfd)  # the disk recovers; the writer empties the queue
        def settled(prev=[-1]):
            n = fifo.n; same = n == prev[0] and n > 0; prev[0] = n; return same
        check(wait_until(settled, 5, 0.2), f"stall: queue written once the disk recovers ({fifo.n} bytes)")
        a.sendall(b"go\n")
        check(fifo.wait(lambda r: b" stdout F after\n" in r.tail, 5), "stall: output logged again")
        tail = fifo.tail[-400:].split(b"\n")
        m = [l for l in tail if b"[berth-monitor] dropped" in l]
        check(m and m[-1].endswith(b"(reason: disk stalled)") and tail[-2].endswith(b" stdout F after"), f"stall: marker then output {tail[-3:]}")
        check(wait_until(lambda: any(e["type"] == "log-dropped" and e["reason"] == "disk stalled" for e in events(st)), 2), f"stall: log-dropped event {events(st)}")
        a.sendall(b"y\n")
        check(wait_eof(s) and exit_json(st)["exitCode"] == 0, "stall: exit")
    finally:
        os.close(rfd)

def t_stall_exit():
    # The writer is still stuck when the container exits: the monitor gives up on it.
    log = f"{T}/logs/stallx.log"; os.makedirs(f"{T}/logs", exist_ok=True); os.mkfifo(log)
    rfd = os.open(log, os.O_RDONLY | os.O_NONBLOCK)
    try:
        res, rc, st = start("stallx", ["sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x | fold -w 99; exit 5"],
                            log=log, extra=["--log-buffer", "65536", "--log-stall-ms", "200"])
        s = ctl_conn(st); t0 = time.time(); ctl(s, "start")
        check(wait_eof(s, 10), "stallx: monitor exits")
        dt = time.time() - t0
        check(dt < 5, f"stallx: bounded by stall + log flush bound ({dt:.1f}s)")
        check(exit_json(st)["exitCode"] == 5, f"stallx: exit.json {exit_json(st)}")
        ev = [e for e in events(st) if e["type"] == "log-dropped"]
        check(len(ev) == 1 and ev[0]["reason"] == "disk stalled" and ev[0]["bytes"] > 500000, f"stallx: log-dropped at exit {ev}")
    finally:
        os.close(rfd)

def t_oom_child():
    res, rc, st = start("oomchild", ["sh", "-c", "read x; head -c 100000000 /dev/zero | tail -c 50000000 >/dev/null; echo rc=$?; read y"],
                        stdin=True, mem=16 << 20)
    a = attach(st); s = ctl_conn(st); rd = Reader(a)
    check(ctl(s, "start") == "ok", "oomchild: start")
    a.sendall(b"go\n")
    got = wait_note(s, 10)
    t_note = time.time()
    check(got == "!event", f"oomchild: !event on the OOM kill ({got})")
    check(rd.wait(lambda r: b"rc=" in r.tail, 5) and b"rc=137" in rd.tail, f"oomchild: child killed {rd.tail!r}")
    check(time.time() - t_note < 1.0, f"oomchild: the child's exit showed within 1 s of the notification ({time.time() - t_note:.3f}s)")
    ev = [e for e in events(st) if e["type"] == "oom"]
    check(len(ev) == 1 and ev[0]["oomKills"] == 1, f"oomchild: oom event {ev}")
    rc_rec = [r for r in log_records("oomchild") if r[3].startswith(b"rc=")]
    def ts(x): return time.mktime(time.strptime(x[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + float("0" + x[19:-1])
    lag = ts(ev[0]["time"]) - ts(rc_rec[0][0]) if ev and rc_rec else 99
    check(lag < 1.0, f"oomchild: event within 1 s of the kill ({lag:.3f}s after the child's exit was logged)")
    pid = res["pid"]
    alive = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    check(alive and stats(s).get("oomKills") == 1, "oomchild: init still running, stats oomKills 1")
    check(ctl(s, "kill 9") == "ok" and wait_eof(s), "oomchild: killed")
    ej = exit_json(st)
    check(ej["oomKilled"] is True and ej["oomKills"] == 1 and ej["signal"] == 9, f"oomchild: exit.json {ej}")

def t_opts():
    # bad values are usage errors (exit 2) before anything starts
    for opt in (["--log-max-files", "0"], ["--log-max-size", "-1"], ["--log-buffer", "0"], ["--log-stall-ms", "x"]):
        p = subprocess.run([MON, "run", "--id", "x", "--bundle", "x", "--runtime", RUNC, "--runtime-root", RUNC_ROOT,
                            "--state-dir", f"{T}/state/opts", "--log-path", f"{T}/logs/opts.log"] + opt, capture_output=True)
        check(p.returncode == 2 and b"usage" in p.stderr, f"opts: {opt} -> {p.returncode}")

def t_idmap():
    """--idmap: the layers idmapped under a read-only overlay; the fallback; a restart."""
    os.chmod(T, 0o711)  # runc, as the container's root, reaches the root by path
    layer = f"{T}/idmap/layer"
    os.makedirs(f"{layer}/l2", exist_ok=True)
    open(f"{layer}/l2/f", "w").write("x")
    os.chown(f"{layer}/l2/f", 5, 5)
    merged = f"{T}/idmap/merged"
    os.makedirs(merged, exist_ok=True)
    def userns(c):
        c["root"]["path"] = merged
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000000, "size": 65536}]
    idmap = ["--idmap", "100000000:100000000:65536", "--idmap-lower", layer, "--idmap-lower", ROOTFS]
    show = ["sh", "-c", "id -u; stat -c %u /bin/busybox; stat -c %u:%g /l2/f"]
    res, st = run_simple("idmap", show, tweak=userns, extra=["--overlay", f"{ROOTFS}:::{merged}"] + idmap)
    texts = [r[3] for r in log_records("idmap")]
    check(res["ok"] and texts == [b"0", b"0", b"5:5"], f"idmap: {res} {texts}")
    check(not os.path.ismount(merged), "idmap: root unmounted after the run")
    check("idmap-fallback" not in open(f"{st}/events.jsonl").read(), "idmap: no fallback")
    # An overlay mount cannot be idmapped: the monitor falls back to LOWER as it is.
    ovl = f"{T}/idmap/ovl"
    os.makedirs(ovl, exist_ok=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={layer}:{ROOTFS}", ovl], check=True)
    try:
        fb = ["--overlay", f"{ROOTFS}:::{merged}", "--idmap", "100000000:100000000:65536", "--idmap-lower", ovl]
        res, st = run_simple("idmapfb", show[:2] + ["id -u; stat -c %u /bin/busybox"], tweak=userns, extra=fb)
        texts = [r[3] for r in log_records("idmapfb")]
        ev = [json.loads(l) for l in open(f"{st}/events.jsonl")]
        check(res["ok"] and texts == [b"0", b"65534"], f"idmap fallback: {res} {texts}")
        check([e["type"] for e in ev if e["type"] == "idmap-fallback"] == ["idmap-fallback"], f"idmap fallback event: {ev}")
    finally:
        subprocess.run(["umount", ovl])
    # A restart by policy mounts the root again.
    res, rc, st = start("idmaprs2", ["sh", "-c", "stat -c %u /l2/f; exit 1"], tweak=userns,
                        extra=["--overlay", f"{ROOTFS}:::{merged}", "--restart", "on-failure", "--restart-max", "1",
                               "--restart-delay-ms", "10"] + idmap)
    s = ctl_conn(st)
    ctl(s, "start")
    check(wait_eof(s), "idmap restart: monitor done")
    texts = [r[3] for r in log_records("idmaprs2")]
    check(texts == [b"5", b"5"], f"idmap restart: both runs see the layer idmapped: {texts}")
    # userns-create, netns-create: the network namespace is owned by the user namespace
    uf, nf = f"{T}/idmap/userns", f"{T}/idmap/netns"
    p = subprocess.run([MON, "userns-create", "--idmap", "100000000:100000000:65536", "--path", uf], capture_output=True)
    q = subprocess.run([MON, "netns-create", "--userns", uf, "--path", nf], capture_output=True)
    try:
        import fcntl
        fd = os.open(nf, os.O_RDONLY)
        owner = fcntl.ioctl(fd, 0xb701)  # NS_GET_USERNS
        check(p.returncode == 0 and q.returncode == 0 and os.fstat(owner).st_ino == os.stat(uf).st_ino,
              f"idmap: netns owned by the userns {p.stderr} {q.stderr}")
        os.close(owner); os.close(fd)
        m = open(f"/proc/self/mountinfo").read()
        check(f" {uf} " in m and f" {nf} " in m, "idmap: namespaces kept by bind mounts")
    finally:
        subprocess.run(["umount", nf]); subprocess.run(["umount", uf])
    # --idmap needs --overlay and --idmap-lower
    for opt in (idmap, ["--idmap", "1:1:0", "--idmap-lower", layer, "--overlay", f"{ROOTFS}:::{merged}"],
                ["--idmap-lower", layer, "--overlay", f"{ROOTFS}:::{merged}"]):
        p = subprocess.run([MON, "run", "--id", "x", "--bundle", "x", "--runtime", RUNC, "--runtime-root", RUNC_ROOT,
                            "--state-dir", f"{T}/state/opts", "--log-path", f"{T}/logs/opts.log"] + opt, capture_output=True)
        check(p.returncode == 2 and b"usage" in p.stderr, f"idmap opts: {opt} -> {p.returncode}")

TESTS = [t_echo, t_exit3, t_kill9, t_attach, t_longline, t_stdin, t_stdin_big, t_flow, t_flow_resume,
         t_terminal, t_reopen, t_drain_bound, t_oom, t_nonexist, t_dup_id, t_exec_tty, t_attach_disconnect,
         t_ctl_misc, t_sync_fd_stdout, t_stdin_epipe, t_exec_tty_more, t_rotate, t_drop_full,
         t_stall, t_stall_exit, t_oom_child, t_opts, t_idmap]

if __name__ == "__main__":
    sel = sys.argv[1:]
    for t in TESTS:
        if sel and t.__name__[2:] not in sel: continue
        try:
            t()
        except Exception as e:
            import traceback; traceback.print_exc()
            failures.append(f"{t.__name__}: {e!r}")
    print("FAILURES:", failures if failures else "none")
    sys.exit(1 if failures else 0)
PY
